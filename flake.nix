{
  description = "HydraMesh: a distributed text-to-image inference cluster over DCF/UDP (Trio + diffusers)";

  # Pin with `nix flake lock` (flake.lock is committed by whoever first locks it
  # on a machine with network access; see docs/DEPLOYMENT.md).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # GPU stacks (CUDA wheels, ROCm) are x86_64-only in nixpkgs.
      systems = [ "x86_64-linux" ];
      forAllSystems = f: lib.genAttrs systems f;

      version = (lib.importTOML ./pyproject.toml).project.version;

      # The package's store path leaves out deployment files, tests, docs and
      # benchmarks, so editing those does not rebuild it (and a renamed or new
      # package folder needs no change here).
      src = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.difference ./. (
          lib.fileset.unions (
            map lib.fileset.maybeMissing [
              ./flake.nix
              ./flake.lock
              ./containers
              ./modules
              ./tests
              ./docs
              ./bench
              ./.ci
              ./.venv
              ./local-models
              ./model-cache
            ]
          )
        );
      };

      # One Python for everything (DESIGN: Python >= 3.11).
      pythonAttr = "python311";

      # A Python package set whose `torch` is the given variant, so that
      # diffusers, accelerate and transformers all link against the same torch.
      pythonWithTorch =
        pkgs: torchFor:
        pkgs.${pythonAttr}.override {
          packageOverrides = pyfinal: pyprev: { torch = torchFor pyprev; };
        };

      mkHydramesh =
        {
          python,
          withWorker ? false,
        }:
        python.pkgs.buildPythonApplication {
          pname = if withWorker then "hydramesh-worker" else "hydramesh";
          inherit version src;
          pyproject = true;
          build-system = [ python.pkgs.setuptools ];
          dependencies =
            with python.pkgs;
            [
              trio
              attrs
              structlog
              pillow
              hypercorn
              starlette
            ]
            ++ lib.optionals withWorker [
              torch
              diffusers
              transformers
              accelerate
              safetensors
              huggingface-hub
              numpy
            ];
          # The suite starts real processes on loopback and runs the tiny model;
          # it runs in CI from the repository, not in the sandboxed build.
          doCheck = false;
          pythonImportsCheck = [
            "hydramesh.common"
            "hydramesh.head"
          ] ++ lib.optional withWorker "hydramesh.worker";
          meta = {
            description = "HydraMesh distributed text-to-image inference cluster";
            license = lib.licenses.mit;
            mainProgram = "hydramesh";
            platforms = lib.platforms.linux;
          };
        };

      overlay = final: prev: {
        # Head, shim and client: no torch.
        hydramesh = mkHydramesh { python = final.${pythonAttr}; };
        # Workers: CPU torch (built from source by nixpkgs), CUDA (the official
        # PyTorch wheels, torch-bin: unfree), ROCm (torch built with ROCm).
        hydramesh-worker = mkHydramesh {
          python = final.${pythonAttr};
          withWorker = true;
        };
        hydramesh-worker-cuda = mkHydramesh {
          python = pythonWithTorch final (py: py.torch-bin);
          withWorker = true;
        };
        hydramesh-worker-rocm = mkHydramesh {
          python = pythonWithTorch final (py: py.torchWithRocm);
          withWorker = true;
        };
      };

      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          overlays = [ overlay ];
          # torch-bin bundles CUDA, which is unfree.
          config.allowUnfree = true;
        };

      # OCI images with nixpkgs' dockerTools (no Dockerfile, no daemon needed):
      #   nix build .#container-head && podman load < result
      mkImage =
        pkgs:
        {
          name,
          package,
          program,
          ports,
          env ? [ ],
          dataDirs ? [ ],
        }:
        pkgs.dockerTools.buildLayeredImage {
          name = "hydramesh/${name}";
          tag = version;
          contents = [
            package
            pkgs.dockerTools.caCertificates
            pkgs.dockerTools.fakeNss
          ];
          # Writable, owned by the unprivileged runtime user.
          fakeRootCommands = ''
            mkdir -p ./tmp ./home/hydramesh ${lib.concatMapStringsSep " " (d: "./${d}") dataDirs}
            chmod 1777 ./tmp
            chown -R 10001:10001 ./home/hydramesh ${lib.concatMapStringsSep " " (d: "./${d}") dataDirs}
          '';
          enableFakechroot = false;
          config = {
            Entrypoint = [ "${package}/bin/${program}" ];
            User = "10001:10001";
            WorkingDir = "/home/hydramesh";
            Env = [
              "HOME=/home/hydramesh"
              "HYDRAMESH_LOG_FORMAT=json"
              "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
            ] ++ env;
            ExposedPorts = lib.genAttrs ports (_: { });
          };
        };

      workerEnv = [
        "WORKER_MODELS_DIR=/models"
        "HF_HOME=/data/huggingface"
      ];

      # A bootable all-in-one node: head + shim + one worker, NVIDIA and AMD
      # kernel drivers both present. `device` picks the worker's torch build.
      isoSystem =
        device:
        lib.nixosSystem {
          system = "x86_64-linux";
          modules = [
            "${nixpkgs}/nixos/modules/installer/cd-dvd/installation-cd-minimal.nix"
            self.nixosModules.default
            (
              { config, pkgs, ... }:
              {
                nixpkgs.config.allowUnfree = true;
                isoImage.isoBaseName = "hydramesh-${device}";
                # NVIDIA (open kernel modules, Turing and newer) and AMD (amdgpu
                # is in the kernel; ROCm userspace comes with the worker's torch).
                hardware.graphics.enable = true;
                services.xserver.videoDrivers = [
                  "nvidia"
                  "amdgpu"
                ];
                hardware.nvidia = {
                  open = true;
                  package = config.boot.kernelPackages.nvidiaPackages.production;
                  nvidiaSettings = false;
                };
                hardware.amdgpu.opencl.enable = true;
                environment.systemPackages = [
                  pkgs.nvtopPackages.full
                  pkgs.rocmPackages.rocminfo
                  pkgs.rocmPackages.rocm-smi
                ];

                services.hydramesh = {
                  enable = true;
                  head.enable = true;
                  shim.enable = true;
                  worker = {
                    enable = true;
                    inherit device;
                  };
                  openFirewall = true;
                };
              }
            )
          ];
        };
    in
    {
      overlays.default = overlay;

      nixosModules.hydramesh = import ./modules/hydramesh.nix;
      # The module plus the overlay that provides its default packages.
      nixosModules.default = {
        imports = [ self.nixosModules.hydramesh ];
        nixpkgs.overlays = [ self.overlays.default ];
      };

      nixosConfigurations = {
        iso-nvidia = isoSystem "nvidia";
        iso-rocm = isoSystem "rocm";
      };

      packages = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          image = mkImage pkgs;
        in
        {
          default = pkgs.hydramesh;
          inherit (pkgs)
            hydramesh
            hydramesh-worker
            hydramesh-worker-cuda
            hydramesh-worker-rocm
            ;

          container-head = image {
            name = "head";
            package = pkgs.hydramesh;
            program = "hydramesh-head";
            ports = [
              "7777/udp"
              "7780/tcp"
            ];
          };
          container-shim = image {
            name = "shim";
            package = pkgs.hydramesh;
            program = "hydramesh-shim";
            ports = [
              "9999/udp"
              "8080/tcp"
            ];
          };
          container-worker-nvidia = image {
            name = "worker-nvidia";
            package = pkgs.hydramesh-worker-cuda;
            program = "hydramesh-worker";
            ports = [ "7790/tcp" ];
            dataDirs = [
              "models"
              "data/huggingface"
            ];
            env = workerEnv ++ [
              # The NVIDIA container toolkit mounts the host's driver libraries
              # into one of these; Nix-built binaries do not search them.
              "LD_LIBRARY_PATH=/usr/lib64:/usr/lib/x86_64-linux-gnu"
              "NVIDIA_VISIBLE_DEVICES=all"
              "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
            ];
          };
          container-worker-rocm = image {
            name = "worker-rocm";
            package = pkgs.hydramesh-worker-rocm;
            program = "hydramesh-worker";
            ports = [ "7790/tcp" ];
            dataDirs = [
              "models"
              "data/huggingface"
            ];
            env = workerEnv;
          };

          iso = self.nixosConfigurations.iso-nvidia.config.system.build.isoImage;
          iso-rocm = self.nixosConfigurations.iso-rocm.config.system.build.isoImage;
        }
      );

      devShells = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
          mkShell =
            python:
            pkgs.mkShell {
              packages = [
                (python.withPackages (
                  ps: with ps; [
                    # service dependencies
                    trio
                    attrs
                    structlog
                    pillow
                    hypercorn
                    starlette
                    # worker extra
                    torch
                    diffusers
                    transformers
                    accelerate
                    safetensors
                    huggingface-hub
                    numpy
                    # tests
                    pytest
                    pytest-trio
                    hypothesis
                    httpx
                    openai
                    pip
                  ]
                ))
                # Rust stable (the DCF SDK interop tooling)
                pkgs.rustc
                pkgs.cargo
                pkgs.rustfmt
                pkgs.clippy
                pkgs.rust-analyzer
                # tools
                pkgs.ruff
                pkgs.git
                pkgs.nixfmt
                pkgs.hadolint
                pkgs.docker-compose
                pkgs.kubectl
                pkgs.kustomize
                pkgs.yamllint
                pkgs.nftables
                pkgs.iproute2
              ];
              shellHook = ''
                # The package itself, editable, on top of the Nix-provided
                # dependencies; one venv per checkout and Python, outside the tree.
                venv="''${XDG_CACHE_HOME:-$HOME/.cache}/hydramesh/devshell-$(printf '%s' "$PWD ${python}" | sha256sum | cut -c1-16)"
                if [ ! -x "$venv/bin/python" ]; then
                  python -m venv --system-site-packages "$venv"
                  "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e .
                fi
                source "$venv/bin/activate"
              '';
            };
        in
        {
          # NVIDIA / general: CUDA wheels of torch (also runs on the CPU).
          default = mkShell (pythonWithTorch pkgs (py: py.torch-bin));
          rocm = mkShell (pythonWithTorch pkgs (py: py.torchWithRocm));
        }
      );

      formatter = forAllSystems (system: (pkgsFor system).nixfmt);
    };
}
