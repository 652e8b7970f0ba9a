# Configurations of services.hydramesh that tests/deploy/test_nix.py evaluates.
{
  allInOne = {
    enable = true;
    clusterKeyFile = "/run/keys/hydramesh-cluster-key";
    hfTokenFile = "/run/keys/hf-token";
    openFirewall = true;
    head.enable = true;
    shim = {
      enable = true;
      apiKeyFile = "/run/keys/shim-api-keys";
      allow = [
        "10.0.0.0/8"
        "192.168.0.0/16"
      ];
    };
    worker = {
      enable = true;
      device = "nvidia";
      instances = 2;
      port = 7800;
      models = [
        "/var/lib/hydramesh/models/my_custom_model.safetensors"
        "stabilityai/sd-turbo"
      ];
    };
  };

  rocmWorkers = {
    enable = true;
    worker = {
      enable = true;
      device = "rocm";
      instances = 3;
      headAddress = "10.1.2.3";
    };
  };

  cpuWorker = {
    enable = true;
    hfToken = "hf_inline_token";
    worker = {
      enable = true;
      device = "cpu";
      extraArgs = [ "--dtype=float32" ];
    };
  };

  nothingEnabled = {
    enable = true;
  };

  disabled = {
    enable = false;
    head.enable = true;
  };

  badSecrets = {
    enable = true;
    clusterKeyFile = "/nix/store/00000000000000000000000000000000-cluster-key";
    hfToken = "hf_x";
    hfTokenFile = "relative/hf-token";
    head.enable = true;
  };

  badDirs = {
    enable = true;
    modelsDir = "/srv/models";
    cacheDir = "/var/cache/";
    worker.enable = true;
  };

  portClash = {
    enable = true;
    head = {
      enable = true;
      httpPort = 7791;
    };
    worker = {
      enable = true;
      instances = 2;
    };
  };
}
