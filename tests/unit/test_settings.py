import base64
import os
import stat

import pytest

from identity.settings import (
    DEFAULT_KEY_FILE,
    Argon2Params,
    EncryptionKeys,
    HttpLimits,
    OpsSettings,
    Settings,
    normalize_database_url,
)

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(32, 64))).decode()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///identity.db", "sqlite+aiosqlite:///identity.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_normalize_database_url(url, expected):
    assert normalize_database_url(url) == expected


def test_argon2_defaults_are_at_least_owasp_minimum():
    params = Argon2Params()
    assert params.memory_kib >= 19 * 1024
    assert params.time_cost >= 2
    assert params.parallelism == 1


def test_settings_normalize_url_and_issuer():
    settings = Settings(database_url="sqlite:///x.db", issuer="https://login.example.test", hash_workers=1)
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert settings.issuer == "https://login.example.test/"
    assert settings.is_sqlite
    assert Settings(issuer="https://login.example.test/", hash_workers=1).issuer == "https://login.example.test/"


def test_settings_know_postgres_is_not_sqlite():
    assert not Settings(database_url="postgresql://h/db", hash_workers=1).is_sqlite


@pytest.mark.parametrize("issuer", ["login.example.test", "ftp://login.example.test/", "/relative/"])
def test_issuer_must_be_an_http_url(issuer):
    with pytest.raises(ValueError, match="IDENTITY_ISSUER"):
        Settings(issuer=issuer, hash_workers=1)


def test_hash_workers_must_be_positive():
    with pytest.raises(ValueError, match="IDENTITY_HASH_WORKERS"):
        Settings(hash_workers=0)


def test_settings_repr_hides_encryption_keys():
    keys = EncryptionKeys.parse(f"k1={KEY_A}")
    assert KEY_A not in repr(Settings(encryption_keys=keys, hash_workers=1))
    assert KEY_A not in repr(keys)


# -- encryption keys ------------------------------------------------------------------------------------------------


def test_parse_keys_separated_by_commas_or_new_lines_in_order():
    for text in (f"a={KEY_A},b={KEY_B}", f"a={KEY_A}\nb={KEY_B}\n", f" a = {KEY_A} ,\n\n# comment\n b={KEY_B}"):
        keys = EncryptionKeys.parse(text)
        assert [kid for kid, _ in keys.keys] == ["a", "b"]
        assert keys.keys[0][1] == bytes(range(32))


def test_parse_accepts_missing_base64_padding():
    assert EncryptionKeys.parse(f"a={KEY_A.rstrip('=')}").keys[0][1] == bytes(range(32))


def test_dump_and_parse_round_trip():
    keys = EncryptionKeys.generate("k9")
    assert EncryptionKeys.parse(keys.dump()) == keys
    assert EncryptionKeys.parse(keys.dump().replace("\n", ",")) == keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one"),
        ("# only a comment", "at least one"),
        (KEY_A.rstrip("="), "kid=base64key"),
        (f"a={KEY_A[:-8]}", "32 bytes"),
        ("a=not*base64", "not valid base64"),
        (f"={KEY_A}", "invalid encryption key id"),
        (f"a.b={KEY_A}", "invalid encryption key id"),
    ],
)
def test_parse_rejects_bad_keys(text, message):
    with pytest.raises(ValueError, match=message):
        EncryptionKeys.parse(text)


@pytest.mark.parametrize(
    "text", [KEY_A, KEY_A.rstrip("="), f"{KEY_A},{KEY_B}"], ids=["padded", "unpadded", "two-padded"]
)
def test_a_key_without_its_id_is_not_echoed_in_the_error(text):
    # An operator who forgets the "kid=" prefix must not find the secret key in logs or CI output.
    with pytest.raises(ValueError) as caught:
        EncryptionKeys.parse(text)
    assert KEY_A.rstrip("=")[:16] not in str(caught.value)


def test_generated_keys_are_random():
    assert EncryptionKeys.generate("k").keys != EncryptionKeys.generate("k").keys


# -- from_env -------------------------------------------------------------------------------------------------------


def test_from_env_reads_every_variable():
    settings = Settings.from_env(
        {
            "IDENTITY_DATABASE_URL": "postgresql://u@db/identity",
            "IDENTITY_ISSUER": "https://login.example.test",
            "IDENTITY_ENCRYPTION_KEYS": f"a={KEY_A},b={KEY_B}",
            "IDENTITY_ARGON2_TIME_COST": "3",
            "IDENTITY_ARGON2_MEMORY_KIB": "65536",
            "IDENTITY_ARGON2_PARALLELISM": "2",
            "IDENTITY_HASH_WORKERS": "4",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://u@db/identity"
    assert settings.issuer == "https://login.example.test/"
    assert [kid for kid, _ in settings.encryption_keys.keys] == ["a", "b"]
    assert settings.argon2 == Argon2Params(time_cost=3, memory_kib=65536, parallelism=2)
    assert settings.hash_workers == 4


def test_from_env_reads_the_key_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"a={KEY_A}\n")
    settings = Settings.from_env(
        {"IDENTITY_DATABASE_URL": "postgresql://h/db", "IDENTITY_ENCRYPTION_KEY_FILE": str(path)}
    )
    assert settings.encryption_keys.keys == (("a", bytes(range(32))),)


def test_from_env_prefers_the_keys_variable_over_the_key_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"file={KEY_B}\n")
    settings = Settings.from_env(
        {
            "IDENTITY_DATABASE_URL": "postgresql://h/db",
            "IDENTITY_ENCRYPTION_KEYS": f"env={KEY_A}",
            "IDENTITY_ENCRYPTION_KEY_FILE": str(path),
        }
    )
    assert [kid for kid, _ in settings.encryption_keys.keys] == ["env"]


def test_from_env_requires_keys_for_a_shared_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="IDENTITY_ENCRYPTION_KEYS"):
        Settings.from_env({"IDENTITY_DATABASE_URL": "postgresql://h/db"})
    assert not (tmp_path / DEFAULT_KEY_FILE).exists()


def test_from_env_creates_a_private_key_file_for_the_embedded_database_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = Settings.from_env({})
    path = tmp_path / DEFAULT_KEY_FILE
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert first.database_url == "sqlite+aiosqlite:///identity.db"
    assert first.issuer == "http://127.0.0.1:8000/"
    second = Settings.from_env({})
    assert second.encryption_keys == first.encryption_keys


@pytest.mark.parametrize("name", ["IDENTITY_ARGON2_TIME_COST", "IDENTITY_HASH_WORKERS"])
def test_from_env_rejects_non_numbers(name):
    with pytest.raises(ValueError):
        Settings.from_env({"IDENTITY_ENCRYPTION_KEYS": f"a={KEY_A}", name: "many"})


# -- a wrong setting stops the start with a message naming the variable --------------------------------------------


def settings_with(**fields):
    return Settings(database_url="sqlite:///x.db", issuer="https://id.test/", **fields)


@pytest.mark.parametrize(
    ("fields", "variable"),
    [
        ({"hash_queue": -1}, "IDENTITY_HASH_QUEUE"),
        ({"hash_wait_ms": 0}, "IDENTITY_HASH_WAIT_MS"),
        ({"log_retention_days": 0}, "IDENTITY_LOG_RETENTION_DAYS"),
        ({"sqlite_synchronous": "OFF"}, "IDENTITY_SQLITE_SYNCHRONOUS"),
        ({"config_cache_seconds": 6}, "IDENTITY_CONFIG_CACHE_SECONDS"),
        ({"config_cache_seconds": -1}, "IDENTITY_CONFIG_CACHE_SECONDS"),
        ({"webauthn_origins": ("login.example.test",)}, "IDENTITY_WEBAUTHN_ORIGINS"),
        ({"webauthn_origins": ("https://login.example.test/path",)}, "IDENTITY_WEBAUTHN_ORIGINS"),
        ({"webauthn_origins": ("android:apk-key-hash:",)}, "IDENTITY_WEBAUTHN_ORIGINS"),
    ],
)
def test_settings_refuse_out_of_range_values_naming_the_variable(fields, variable):
    with pytest.raises(ValueError, match=variable):
        settings_with(**fields)


def test_webauthn_origins_may_name_an_android_app_and_a_trailing_slash():
    settings = settings_with(webauthn_origins=("android:apk-key-hash:abc123", "https://login.example.test/"))
    assert settings.webauthn_origins == ("android:apk-key-hash:abc123", "https://login.example.test/")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"IDENTITY_METRICS": "maybe"}, "IDENTITY_METRICS must be on or off"),
        ({"IDENTITY_LOG_LEVEL": "loud"}, "IDENTITY_LOG_LEVEL must be one of"),
        ({"IDENTITY_LOG_FORMAT": "xml"}, "IDENTITY_LOG_FORMAT must be json or text"),
        ({"IDENTITY_SHUTDOWN_DELAY": "-1"}, "are seconds"),
        ({"IDENTITY_KEYS_REFRESH": "0"}, "are seconds"),
        ({"IDENTITY_PURGE_INTERVAL": "hourly"}, "an IDENTITY_\\* operations setting is not a number"),
        ({"IDENTITY_METRICS_PORT": "nine"}, "an IDENTITY_\\* operations setting is not a number"),
    ],
)
def test_operations_settings_refuse_wrong_values(environ, message):
    with pytest.raises(ValueError, match=message):
        OpsSettings.from_env(environ)


def test_operations_settings_read_their_variables():
    ops = OpsSettings.from_env(
        {
            "IDENTITY_METRICS": "On",
            "IDENTITY_METRICS_PORT": "9100",
            "IDENTITY_LOG_LEVEL": "debug",
            "IDENTITY_LOG_FORMAT": "TEXT",
        }
    )
    assert (ops.metrics, ops.metrics_port, ops.log_level, ops.log_format) == (True, 9100, "DEBUG", "text")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"IDENTITY_HTTP_HEADER_TIMEOUT": "0"}, "must be positive"),
        ({"IDENTITY_HTTP_MAX_HEADER_BYTES": "512"}, "at least 1024"),
        ({"IDENTITY_HTTP_BODY_TIMEOUT": "soon"}, "an IDENTITY_HTTP_\\* setting is not a number"),
    ],
)
def test_http_limits_refuse_wrong_values(environ, message):
    with pytest.raises(ValueError, match=message):
        HttpLimits.from_env(environ)


def test_attestation_roots_file_must_hold_pem_certificates(tmp_path):
    bundle = tmp_path / "roots.pem"
    bundle.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="IDENTITY_WEBAUTHN_ATTESTATION_ROOTS names a file without PEM certificates"):
        Settings.from_env(
            {"IDENTITY_ENCRYPTION_KEYS": f"a={KEY_A}", "IDENTITY_WEBAUTHN_ATTESTATION_ROOTS": str(bundle)}
        )
