"""Where the Hugging Face token comes from."""

from hydramesh.worker.hub import hub_token, read_env_file


def test_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("HF_TOKEN=from-file\n")
    assert hub_token({"HF_TOKEN": "from-env"}, tmp_path / ".env") == "from-env"


def test_token_file_then_env_file(tmp_path):
    (tmp_path / "token").write_text("from-token-file\n")
    (tmp_path / ".env").write_text("# secrets\nexport HF_TOKEN='from-dotenv'\nOTHER=1\n")
    assert hub_token({"HF_TOKEN_FILE": str(tmp_path / "token")}, tmp_path / ".env") == "from-token-file"
    assert hub_token({}, tmp_path / ".env") == "from-dotenv"


def test_empty_means_none(tmp_path):
    (tmp_path / ".env").write_text("HF_TOKEN=\n")
    assert hub_token({"HF_TOKEN": ""}, tmp_path / ".env") is None
    assert hub_token({}, tmp_path / "missing.env") is None


def test_env_file_syntax(tmp_path):
    path = tmp_path / ".env"
    path.write_text('A=1\n  B = "two words"  \n# C=3\nnot a pair\nD=x=y\n')
    assert read_env_file(path) == {"A": "1", "B": "two words", "D": "x=y"}
