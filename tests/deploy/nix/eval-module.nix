# Evaluates modules/hydramesh.nix with nixpkgs' lib alone (no full NixOS, no
# packages): the NixOS options the module sets are declared here with types
# close to NixOS's own, and packages are stand-ins. Returns, per scenario, the
# generated units, firewall ports, warnings and failed assertions as JSON.
#
#   nix-instantiate --eval --strict --json tests/deploy/nix/eval-module.nix \
#     --arg libPath /path/to/nixpkgs.lib
{
  libPath, # a nixpkgs (or nixpkgs.lib) checkout: the folder holding lib/
  repo ? ../../..,
  module ? repo + "/modules/hydramesh.nix",
  scenarios ? import ./scenarios.nix,
  # A whole module (e.g. the flake's nixosModules.default) to use instead.
  moduleOverride ? null,
}:
let
  lib = import (libPath + "/lib");
  inherit (lib) types mkOption;

  fakePackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    drvPath = "/nix/store/00000000000000000000000000000000-${name}.drv";
  };
  pkgs = {
    hydramesh = fakePackage "hydramesh";
    hydramesh-worker = fakePackage "hydramesh-worker";
    hydramesh-worker-cuda = fakePackage "hydramesh-worker-cuda";
    hydramesh-worker-rocm = fakePackage "hydramesh-worker-rocm";
  };

  # nixos/lib/systemd-unit-options.nix: unitOption accepts atoms or lists of atoms.
  atom = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    types.package
  ];
  unitOption = types.oneOf [
    atom
    (types.listOf atom)
  ];

  nixosStubs = {
    options = {
      systemd.services = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options = {
              description = mkOption {
                type = types.str;
                default = "";
              };
              wantedBy = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              after = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              wants = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              environment = mkOption {
                type = types.attrsOf (
                  types.nullOr (
                    types.oneOf [
                      types.str
                      types.path
                      types.package
                    ]
                  )
                );
                default = { };
              };
              serviceConfig = mkOption {
                type = types.attrsOf unitOption;
                default = { };
              };
            };
          }
        );
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      networking.firewall.allowedUDPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      nixpkgs.overlays = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
    };
  };

  evalScenario =
    settings:
    let
      eval = lib.evalModules {
        modules = [
          nixosStubs
          (if moduleOverride != null then moduleOverride else module)
          { services.hydramesh = settings; }
        ];
        specialArgs = {
          inherit pkgs;
        };
      };
      c = eval.config;
    in
    {
      services = lib.mapAttrs (_: s: {
        inherit (s)
          description
          wantedBy
          after
          environment
          serviceConfig
          ;
      }) c.systemd.services;
      firewall = {
        tcp = c.networking.firewall.allowedTCPPorts;
        udp = c.networking.firewall.allowedUDPPorts;
      };
      inherit (c) warnings;
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
      overlays = lib.length c.nixpkgs.overlays;
    };
in
{
  hardening = {
    inherit (import (repo + "/modules/hardening.nix")) head shim;
    worker = lib.genAttrs [
      "nvidia"
      "rocm"
      "cpu"
      "any"
    ] (import (repo + "/modules/hardening.nix")).worker;
  };
  scenarios = lib.mapAttrs (_: evalScenario) scenarios;
}
