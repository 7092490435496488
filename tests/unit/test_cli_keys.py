"""`rendercluster keys add`: the key is printed once and only its hash is stored."""

from typer.testing import CliRunner

from cli.main import app
from core.tenants import hash_key, read_keys_file


def test_keys_add_prints_a_key_and_stores_its_hash(tmp_path):
    path = tmp_path / "keys.yaml"
    args = ["keys", "add", "--tenant", "acme", "--keys-file", str(path)]
    result = CliRunner().invoke(app, [*args, "--requests-per-minute", "30"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("rc_") and key not in path.read_text()
    (entry,) = read_keys_file(path).keys
    assert entry.sha256 == hash_key(key) and entry.tenant == "acme"
    assert entry.limits.requests_per_minute == 30
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    listed = CliRunner().invoke(app, ["keys", "list", "--keys-file", str(path)])
    assert "acme" in listed.stdout and key not in listed.stdout


def test_a_bad_tenant_name_is_refused(tmp_path):
    result = CliRunner().invoke(
        app, ["keys", "add", "--tenant", "Bad Name", "--keys-file", str(tmp_path / "k.yaml")]
    )
    assert result.exit_code == 2 and not (tmp_path / "k.yaml").exists()
