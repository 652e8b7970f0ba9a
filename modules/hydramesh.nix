# NixOS module: services.hydramesh — head, shim and GPU workers of HydraMesh.
#
#   services.hydramesh = {
#     enable = true;
#     clusterKeyFile = "/run/secrets/hydramesh-cluster-key";
#     head.enable = true;
#     shim.enable = true;
#     worker = { enable = true; device = "nvidia"; instances = 2; };
#     openFirewall = true;
#   };
#
# Every unit runs sandboxed with a dynamic user; the shared settings live in
# ./hardening.nix, which the plain unit files in ./systemd/ mirror.
# Secrets (cluster key, HF token, shim API keys) are read by systemd from files
# outside the Nix store and handed to the services as credentials.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.hydramesh;
  hardening = import ./hardening.nix;

  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    types
    literalExpression
    ;

  # ExecStart= is not a shell: double-quote each argument with C-style escapes
  # (JSON's are a subset) and escape systemd's specifier (%) and variable ($)
  # syntax, as nixpkgs' utils.escapeSystemdExecArg does.
  escapeArg = arg: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString arg));
  execLine = args: lib.concatMapStringsSep " " escapeArg args;

  secretFileType = types.nullOr types.str;
  isStorePath = p: lib.hasPrefix "${builtins.storeDir}/" (toString p);
  isAbsolute = p: lib.hasPrefix "/" (toString p);
  secretAssertions =
    name: value:
    lib.optionals (value != null) [
      {
        assertion = isAbsolute value && !(isStorePath value);
        message = "services.hydramesh.${name} must be an absolute path outside the Nix store (the store is world-readable); got '${toString value}'.";
      }
    ];

  # Settings every service reads from its environment. %d is systemd's
  # credentials directory ($CREDENTIALS_DIRECTORY), expanded by systemd.
  commonEnvironment =
    {
      HYDRAMESH_LOG_LEVEL = cfg.logLevel;
      HYDRAMESH_LOG_FORMAT = cfg.logFormat;
    }
    // lib.optionalAttrs (cfg.clusterKeyFile != null) {
      HYDRAMESH_CLUSTER_KEY_FILE = "%d/cluster-key";
    };
  clusterKeyCredential = lib.optional (cfg.clusterKeyFile != null) "cluster-key:${cfg.clusterKeyFile}";

  workerDeviceFlag =
    {
      nvidia = "cuda";
      rocm = "rocm";
      cpu = "cpu";
    }
    .${cfg.worker.device};

  workerIndices = lib.range 0 (cfg.worker.instances - 1);
  workerHttpPort = i: if cfg.worker.httpPort == -1 then -1 else cfg.worker.httpPort + i;
  workerUdpPort = i: if cfg.worker.port == 0 then 0 else cfg.worker.port + i;

  stateRelative = lib.removePrefix "/var/lib/" cfg.modelsDir;
  cacheRelative = lib.removePrefix "/var/cache/" cfg.cacheDir;

  baseUnit = {
    wantedBy = [ "multi-user.target" ];
    after = [ "network-online.target" ];
    wants = [ "network-online.target" ];
  };

  mkWorker =
    i:
    lib.nameValuePair "hydramesh-worker-${toString i}" (
      baseUnit
      // {
        description = "HydraMesh worker ${toString i} (${cfg.worker.device})";
        after = baseUnit.after ++ lib.optional cfg.head.enable "hydramesh-head.service";
        environment =
          commonEnvironment
          // {
            WORKER_ID = "%H-gpu${toString i}";
            HF_HOME = "${cfg.cacheDir}/huggingface";
            XDG_CACHE_HOME = cfg.cacheDir;
            HOME = cfg.cacheDir;
          }
          // lib.optionalAttrs (cfg.worker.device == "nvidia") {
            CUDA_VISIBLE_DEVICES = toString i;
            CUDA_CACHE_PATH = "${cfg.cacheDir}/nv";
          }
          // lib.optionalAttrs (cfg.worker.device == "rocm") {
            HIP_VISIBLE_DEVICES = toString i;
            MIOPEN_USER_DB_PATH = "${cfg.cacheDir}/miopen";
            MIOPEN_CUSTOM_CACHE_DIR = "${cfg.cacheDir}/miopen";
          }
          // lib.optionalAttrs (cfg.hfToken != null && cfg.hfTokenFile == null) {
            HF_TOKEN = cfg.hfToken;
          }
          // lib.optionalAttrs (cfg.hfTokenFile != null) {
            HF_TOKEN_FILE = "%d/hf-token";
          }
          // cfg.worker.environment;
        serviceConfig =
          hardening.worker cfg.worker.device
          // {
            ExecStart =
              execLine (
                [
                  "${cfg.worker.package}/bin/hydramesh-worker"
                  "--head-ip"
                  cfg.worker.headAddress
                  "--head-port"
                  cfg.worker.headPort
                  "--host"
                  cfg.worker.host
                  "--port"
                  (workerUdpPort i)
                  "--http-port"
                  (workerHttpPort i)
                  "--models-dir"
                  cfg.modelsDir
                  "--backend"
                  cfg.worker.backend
                  "--device"
                  workerDeviceFlag
                  "--dtype"
                  cfg.worker.dtype
                  "--offload"
                  cfg.worker.offload
                  "--max-batch"
                  cfg.worker.maxBatch
                  "--capacity"
                  cfg.worker.capacity
                  "--heartbeat-interval"
                  cfg.worker.heartbeatInterval
                ]
                ++ lib.concatMap (m: [
                  "--model-path"
                  m
                ]) cfg.worker.models
                ++ cfg.worker.extraArgs
              );
            StateDirectory = stateRelative;
            CacheDirectory = cacheRelative;
            WorkingDirectory = "/var/lib/${stateRelative}";
            LoadCredential =
              clusterKeyCredential ++ lib.optional (cfg.hfTokenFile != null) "hf-token:${cfg.hfTokenFile}";
          };
      }
    );
in
{
  options.services.hydramesh = {
    enable = mkEnableOption "HydraMesh, a distributed text-to-image inference cluster; enable the roles below (head, shim, worker)";

    package = mkOption {
      type = types.package;
      default =
        pkgs.hydramesh
          or (throw "services.hydramesh.package: pkgs.hydramesh does not exist; import the flake's nixosModules.default (it adds the overlay) or set this option");
      defaultText = literalExpression "pkgs.hydramesh";
      description = "HydraMesh without the ML stack (head and shim; no torch).";
    };

    logLevel = mkOption {
      type = types.enum [
        "debug"
        "info"
        "warning"
        "error"
      ];
      default = "info";
      description = "Log level of all services.";
    };

    logFormat = mkOption {
      type = types.enum [
        "auto"
        "json"
        "console"
      ];
      default = "json";
      description = "Log rendering: one JSON object per line suits the journal and log shippers.";
    };

    clusterKeyFile = mkOption {
      type = secretFileType;
      default = null;
      example = "/run/secrets/hydramesh-cluster-key";
      description = ''
        File holding the shared cluster secret (any bytes). Every intra-cluster
        datagram is then authenticated; nodes without the key cannot join.
        Read by systemd (as root) and passed to the services as a credential, so
        the file can be root-only. Must be an absolute path outside the Nix store.
        All nodes of a cluster need the same key.
      '';
    };

    hfToken = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = ''
        Hugging Face token for gated or private models. WARNING: this value is
        copied into the world-readable Nix store. Prefer {option}`hfTokenFile`.
      '';
    };

    hfTokenFile = mkOption {
      type = secretFileType;
      default = null;
      example = "/run/secrets/hf-token";
      description = "File holding the Hugging Face token, passed to workers as a credential (HF_TOKEN_FILE). Absolute path outside the Nix store.";
    };

    modelsDir = mkOption {
      type = types.str;
      default = "/var/lib/hydramesh/models";
      description = ''
        Models directory of the workers (local .safetensors checkpoints, diffusers
        directories, the generated tiny model). Must lie under /var/lib/: it is
        the workers' StateDirectory, owned by their dynamic user. Put models on
        another disk by mounting it here.
      '';
    };

    cacheDir = mkOption {
      type = types.str;
      default = "/var/cache/hydramesh";
      description = "Cache directory of the workers (HF_HOME is its huggingface/ subfolder). Must lie under /var/cache/: it is the workers' CacheDirectory.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the enabled roles' UDP and HTTP ports in the firewall.";
    };

    head = {
      enable = mkEnableOption "the HydraMesh head (router)";
      host = mkOption {
        type = types.str;
        default = "0.0.0.0";
        description = "Address the cluster (UDP) and HTTP sockets bind to.";
      };
      port = mkOption {
        type = types.port;
        default = 7777;
        description = "UDP cluster port.";
      };
      httpPort = mkOption {
        type = types.port;
        default = 7780;
        description = "TCP port of /healthz, /metrics, /status and the status page.";
      };
      queueMax = mkOption {
        type = types.ints.positive;
        default = 256;
        description = "Admission bound; above it clients get `busy` with retry_after.";
      };
      maxAttempts = mkOption {
        type = types.ints.positive;
        default = 3;
        description = "Workers that may lose a task after acknowledging it before it fails with worker_failed.";
      };
      heartbeatTimeout = mkOption {
        type = types.number;
        default = 3.0;
        description = "Seconds without a heartbeat after which a worker is dead.";
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Extra command-line arguments of hydramesh-head.";
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Extra environment of the head.";
      };
    };

    shim = {
      enable = mkEnableOption "the HydraMesh shim (public UDP ingress and OpenAI-compatible HTTP API)";
      host = mkOption {
        type = types.str;
        default = "0.0.0.0";
        description = "Address the ingress and HTTP sockets bind to.";
      };
      ingressPort = mkOption {
        type = types.port;
        default = 9999;
        description = "Public UDP ingress port.";
      };
      httpPort = mkOption {
        type = types.port;
        default = 8080;
        description = "TCP port of the OpenAI-compatible images API, /healthz and /metrics.";
      };
      nodeTarget = mkOption {
        type = types.str;
        default = "127.0.0.1:${toString cfg.head.port}";
        defaultText = literalExpression ''"127.0.0.1:''${toString config.services.hydramesh.head.port}"'';
        description = "host:port of the head's cluster port.";
      };
      apiKeyFile = mkOption {
        type = secretFileType;
        default = null;
        description = "File of accepted API keys, passed to the shim as a credential. Absolute path outside the Nix store.";
      };
      allow = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "10.0.0.0/8"
          "192.168.0.0/16"
        ];
        description = "Source networks (CIDR) allowed to use the shim; empty allows all.";
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Extra command-line arguments of hydramesh-shim.";
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Extra environment of the shim.";
      };
    };

    worker = {
      enable = mkEnableOption "HydraMesh GPU workers (one process per GPU)";
      device = mkOption {
        type = types.enum [
          "nvidia"
          "rocm"
          "cpu"
        ];
        default = "nvidia";
        description = ''
          Accelerator of this host. Selects the torch build of the default
          package, the `--device` flag, the GPU pinning variable
          (CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES) and the device nodes the
          sandbox lets through (none for cpu).
        '';
      };
      package = mkOption {
        type = types.package;
        default =
          let
            attr =
              {
                nvidia = "hydramesh-worker-cuda";
                rocm = "hydramesh-worker-rocm";
                cpu = "hydramesh-worker";
              }
              .${cfg.worker.device};
          in
          pkgs.${attr}
            or (throw "services.hydramesh.worker.package: pkgs.${attr} does not exist; import the flake's nixosModules.default or set this option");
        defaultText = literalExpression ''
          { nvidia = pkgs.hydramesh-worker-cuda; rocm = pkgs.hydramesh-worker-rocm; cpu = pkgs.hydramesh-worker; }.''${device}'';
        description = "HydraMesh with the worker extra (torch, diffusers, ...) for this device.";
      };
      instances = mkOption {
        type = types.ints.positive;
        default = 1;
        description = ''
          Number of worker processes, one per GPU: instance i runs as
          hydramesh-worker-i.service, sees only GPU i and serves HTTP on
          httpPort + i (and UDP on port + i when port is not 0).
        '';
      };
      headAddress = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = "IP address of the head.";
      };
      headPort = mkOption {
        type = types.port;
        default = cfg.head.port;
        defaultText = literalExpression "config.services.hydramesh.head.port";
        description = "UDP cluster port of the head.";
      };
      host = mkOption {
        type = types.str;
        default = "0.0.0.0";
        description = "Address the worker's sockets bind to.";
      };
      port = mkOption {
        type = types.port;
        default = 0;
        description = "UDP port of instance 0 (instance i uses port + i); 0 picks an ephemeral port, which a stateful firewall lets through as replies to the worker's own heartbeats.";
      };
      httpPort = mkOption {
        type = types.ints.between (-1) 65535;
        default = 7790;
        description = "TCP port of instance 0's /healthz and /metrics (instance i uses httpPort + i); -1 disables HTTP.";
      };
      models = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "stabilityai/sd-turbo"
          "/var/lib/hydramesh/models/my_custom_model.safetensors"
        ];
        description = "Models to serve: Hub ids or paths under modelsDir. Empty serves the worker's default (the embedded tiny model).";
      };
      backend = mkOption {
        type = types.enum [
          "diffusers"
          "null"
        ];
        default = "diffusers";
        description = "Inference backend (`null` answers without a model, for tests).";
      };
      dtype = mkOption {
        type = types.enum [
          "auto"
          "float16"
          "bfloat16"
          "float32"
        ];
        default = "auto";
        description = "Precision (auto: float16 on GPUs, float32 on CPU).";
      };
      offload = mkOption {
        type = types.enum [
          "none"
          "model"
          "sequential"
          "auto"
        ];
        default = "auto";
        description = "CPU offloading with Accelerate.";
      };
      maxBatch = mkOption {
        type = types.ints.positive;
        default = 4;
        description = "Most compatible requests batched into one pipeline call.";
      };
      capacity = mkOption {
        type = types.ints.positive;
        default = 4;
        description = "Tasks a worker accepts at once.";
      };
      heartbeatInterval = mkOption {
        type = types.number;
        default = 1.0;
        description = "Seconds between heartbeats.";
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Extra command-line arguments of hydramesh-worker.";
      };
      environment = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Extra environment of every worker instance.";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions =
      secretAssertions "clusterKeyFile" cfg.clusterKeyFile
      ++ secretAssertions "hfTokenFile" cfg.hfTokenFile
      ++ secretAssertions "shim.apiKeyFile" cfg.shim.apiKeyFile
      ++ [
        {
          assertion = !(cfg.hfToken != null && cfg.hfTokenFile != null);
          message = "services.hydramesh: set hfToken or hfTokenFile, not both.";
        }
        {
          assertion = lib.hasPrefix "/var/lib/" cfg.modelsDir && stateRelative != "";
          message = "services.hydramesh.modelsDir must lie under /var/lib/ (it is the workers' StateDirectory); got '${cfg.modelsDir}'.";
        }
        {
          assertion = lib.hasPrefix "/var/cache/" cfg.cacheDir && cacheRelative != "";
          message = "services.hydramesh.cacheDir must lie under /var/cache/ (it is the workers' CacheDirectory); got '${cfg.cacheDir}'.";
        }
        {
          assertion =
            let
              tcp =
                lib.optional cfg.head.enable cfg.head.httpPort
                ++ lib.optional cfg.shim.enable cfg.shim.httpPort
                ++ lib.optionals (cfg.worker.enable && cfg.worker.httpPort != -1) (map workerHttpPort workerIndices);
            in
            lib.length tcp == lib.length (lib.unique tcp);
          message = "services.hydramesh: the HTTP ports of head, shim and worker instances (worker.httpPort + i) must all differ.";
        }
        {
          assertion = !(cfg.worker.enable && cfg.worker.httpPort != -1 && cfg.worker.httpPort + cfg.worker.instances - 1 > 65535);
          message = "services.hydramesh.worker: httpPort + instances - 1 exceeds 65535.";
        }
      ];

    warnings =
      lib.optional (cfg.hfToken != null) "services.hydramesh.hfToken is copied into the world-readable Nix store; use services.hydramesh.hfTokenFile instead."
      ++ lib.optional (
        !(cfg.head.enable || cfg.shim.enable || cfg.worker.enable)
      ) "services.hydramesh.enable is set but no role is: enable head, shim and/or worker."
      ++ lib.optional (
        cfg.clusterKeyFile == null && (cfg.head.enable || cfg.worker.enable)
      ) "services.hydramesh.clusterKeyFile is not set: any host that reaches the cluster port can join the cluster or inject tasks.";

    systemd.services =
      lib.optionalAttrs cfg.head.enable {
        hydramesh-head = baseUnit // {
          description = "HydraMesh head (router)";
          environment = commonEnvironment // cfg.head.environment;
          serviceConfig = hardening.head // {
            ExecStart =
              execLine (
                [
                  "${cfg.package}/bin/hydramesh-head"
                  "--host"
                  cfg.head.host
                  "--port"
                  cfg.head.port
                  "--http-port"
                  cfg.head.httpPort
                  "--queue-max"
                  cfg.head.queueMax
                  "--max-attempts"
                  cfg.head.maxAttempts
                  "--heartbeat-timeout"
                  cfg.head.heartbeatTimeout
                ]
                ++ cfg.head.extraArgs
              );
            LoadCredential = clusterKeyCredential;
          };
        };
      }
      // lib.optionalAttrs cfg.shim.enable {
        hydramesh-shim = baseUnit // {
          description = "HydraMesh shim (ingress and HTTP API)";
          after = baseUnit.after ++ lib.optional cfg.head.enable "hydramesh-head.service";
          environment =
            commonEnvironment
            // lib.optionalAttrs (cfg.shim.apiKeyFile != null) {
              SHIM_API_KEY_FILE = "%d/api-keys";
            }
            // cfg.shim.environment;
          serviceConfig = hardening.shim // {
            ExecStart =
              execLine (
                [
                  "${cfg.package}/bin/hydramesh-shim"
                  "--host"
                  cfg.shim.host
                  "--ingress-port"
                  cfg.shim.ingressPort
                  "--node-target"
                  cfg.shim.nodeTarget
                  "--http-port"
                  cfg.shim.httpPort
                ]
                ++ lib.optionals (cfg.shim.allow != [ ]) [
                  "--allow"
                  (lib.concatStringsSep "," cfg.shim.allow)
                ]
                ++ cfg.shim.extraArgs
              );
            LoadCredential =
              clusterKeyCredential ++ lib.optional (cfg.shim.apiKeyFile != null) "api-keys:${cfg.shim.apiKeyFile}";
          };
        };
      }
      // lib.optionalAttrs cfg.worker.enable (lib.listToAttrs (map mkWorker workerIndices));

    networking.firewall = mkIf cfg.openFirewall {
      allowedUDPPorts =
        lib.optional cfg.head.enable cfg.head.port
        ++ lib.optional cfg.shim.enable cfg.shim.ingressPort
        ++ lib.optionals (cfg.worker.enable && cfg.worker.port != 0) (map workerUdpPort workerIndices);
      allowedTCPPorts =
        lib.optional cfg.head.enable cfg.head.httpPort
        ++ lib.optional cfg.shim.enable cfg.shim.httpPort
        ++ lib.optionals (cfg.worker.enable && cfg.worker.httpPort != -1) (map workerHttpPort workerIndices);
    };
  };
}
