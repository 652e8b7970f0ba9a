# Imports flake.nix by hand with a stand-in nixpkgs input that has only `lib`
# (evaluating a flake needs its inputs, and nixpkgs can't be fetched here).
# Everything that needs real packages stays unevaluated; what is returned needs
# only lib: the output names, the module export, and the module evaluated
# through the flake's nixosModules.default.
{
  libPath,
  repo ? ../../..,
}:
let
  lib = import (libPath + "/lib");
  flake = import (repo + "/flake.nix");
  nixpkgs = {
    inherit lib;
    outPath = "/nonexistent/nixpkgs";
    legacyPackages = throw "flake-outputs.nix: packages are not available in this check";
  };
  outputs = flake.outputs {
    inherit self nixpkgs;
  };
  self = outputs // {
    outPath = repo;
  };
  evalModule = import ./eval-module.nix;

  # A stand-in Python whose packages are their own names and whose
  # buildPythonApplication returns its arguments: enough to see which
  # dependencies (which torch) each overlay package gets.
  pyNames = [
    "setuptools"
    "trio"
    "attrs"
    "structlog"
    "pillow"
    "hypercorn"
    "starlette"
    "torch"
    "torch-bin"
    "torchWithRocm"
    "diffusers"
    "transformers"
    "accelerate"
    "safetensors"
    "huggingface-hub"
    "numpy"
  ];
  mkFakePython =
    pyPkgs:
    let
      python = {
        pkgs = pyPkgs // {
          buildPythonApplication = args: builtins.removeAttrs args [ "src" ];
        };
        override =
          { packageOverrides }: mkFakePython (pyPkgs // packageOverrides pyPkgs pyPkgs);
      };
    in
    python;
  fakePython = mkFakePython (lib.genAttrs pyNames (n: n));
  overlaid = outputs.overlays.default { python311 = fakePython; } { python311 = fakePython; };
in
{
  inherit (flake) description;
  inputs = lib.mapAttrs (_: i: i.url or null) flake.inputs;
  outputArgs = lib.attrNames (lib.functionArgs flake.outputs);
  outputs = lib.attrNames outputs;
  packages = lib.mapAttrs (_: lib.attrNames) outputs.packages;
  devShells = lib.mapAttrs (_: lib.attrNames) outputs.devShells;
  nixosModules = lib.attrNames outputs.nixosModules;
  nixosConfigurations = lib.attrNames outputs.nixosConfigurations;
  overlays = lib.attrNames outputs.overlays;
  overlayPackages = lib.mapAttrs (_: p: {
    inherit (p) pname version dependencies;
  }) overlaid;
  viaDefaultModule =
    (evalModule {
      inherit libPath repo;
      moduleOverride = outputs.nixosModules.default;
      scenarios = {
        inherit ((import ./scenarios.nix)) allInOne;
      };
    }).scenarios.allInOne;
}
