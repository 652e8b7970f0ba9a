# The systemd service settings that every HydraMesh unit shares, per role.
#
# Pure data (no nixpkgs, no lib): modules/hydramesh.nix merges it into each
# unit's serviceConfig, and tests/deploy checks that the plain unit files in
# modules/systemd/ say exactly the same, so the two can't drift apart.
#
# Values are written the way NixOS renders them into a unit file: a list is one
# `Key=value` line per element, in order; a bool is yes/no.
#
# Usage: (import ./hardening.nix).head, .shim, or (.worker "nvidia"|"rocm"|"cpu"|"any")
# ("any" allows both NVIDIA and AMD device nodes: the plain worker unit, which
# does not know the host's GPU vendor).
let
  common = {
    Type = "exec";
    Restart = "always";
    # Each service drains gracefully on SIGTERM within ~30 s.
    TimeoutStopSec = "40";
    KillMode = "mixed";

    DynamicUser = true;
    UMask = "0077";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    RestrictAddressFamilies = "AF_INET AF_INET6 AF_UNIX";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallErrorNumber = "EPERM";
    DevicePolicy = "closed";
  };

  # head and shim: pure-Python network services, no devices, no JIT.
  frontend = common // {
    RestartSec = "2";
    PrivateDevices = true;
    PrivateUsers = true;
    ProcSubset = "pid";
    MemoryDenyWriteExecute = true;
    SystemCallFilter = [
      "@system-service"
      "~@privileged @resources"
    ];
  };

  nvidiaDevices = [
    "char-nvidiactl rw"
    "char-nvidia-frontend rw"
    "char-nvidia-uvm rw"
    "char-nvidia-caps rw"
  ];
  amdDevices = [
    "char-drm rw"
    "char-kfd rw"
  ];
in
{
  head = frontend // {
    User = "hydramesh-head";
  };

  shim = frontend // {
    User = "hydramesh-shim";
  };

  # Workers: GPU device nodes (nothing else), no MemoryDenyWriteExecute (CUDA/ROCm
  # JIT-compile kernels), full /proc (accelerate reads /proc/meminfo to plan CPU
  # offload), @resources allowed (OpenMP and NUMA-aware allocators use
  # sched_setaffinity/mbind). All instances share one dynamic user so they can
  # share the models and cache directories.
  worker =
    device:
    let
      gpu = device != "cpu";
      devices =
        if device == "nvidia" then
          nvidiaDevices
        else if device == "rocm" then
          amdDevices
        else if device == "any" then
          nvidiaDevices ++ amdDevices
        else if device == "cpu" then
          [ ]
        else
          throw "hardening.nix: unknown worker device '${device}'";
    in
    common
    // {
      User = "hydramesh-worker";
      RestartSec = "5";
      OOMScoreAdjust = "-500";
      PrivateDevices = !gpu;
      PrivateUsers = false;
      SystemCallFilter = [
        "@system-service"
        "~@privileged"
      ];
    }
    // (
      if devices == [ ] then
        { }
      else
        { DeviceAllow = devices; }
    )
    // (
      if device == "rocm" || device == "any" then
        {
          # /dev/kfd and /dev/dri/renderD* are group-owned (render, video).
          SupplementaryGroups = "video render";
        }
      else
        { }
    );
}
