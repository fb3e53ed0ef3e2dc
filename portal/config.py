"""Every setting: its environment variable, its embedded default and its meaning."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

# The providers' public endpoints by PROVIDER_ENV; "sandbox" points at the separate sandbox server (SANDBOX_URL).
PROVIDER_URLS = {
    "testing": {
        "OEN_API_URL": "https://payment-api.testing.oen.tw",
        "OEN_CHECKOUT_URL": "https://{merchant_id}.testing.oen.tw/checkout/subscription/create/{id}",
        "MYPAY_API_URL": "https://pay.usecase.cc/api/agent",
        "OPAY_API_URL": "https://payment-stage.opay.tw",
    },
    "production": {
        "OEN_API_URL": "https://payment-api.oen.tw",
        "OEN_CHECKOUT_URL": "https://{merchant_id}.oen.tw/checkout/subscription/create/{id}",
        "MYPAY_API_URL": "https://ka.mypay.tw/api/agent",
        "OPAY_API_URL": "https://payment.opay.tw",
    },
}

# The sandbox server's paths, as the real providers' (see PROVIDER_URLS): appended to SANDBOX_URL.
SANDBOX_PATHS = {
    "OEN_API_URL": "/oen/api",
    "OEN_CHECKOUT_URL": "/oen/checkout/{merchant_id}/subscription/create/{id}",
    "MYPAY_API_URL": "/mypay/api/agent",
    "OPAY_API_URL": "/opay",
}
PROVIDER_ENVS = ("sandbox", "testing", "production")

# The documents' public test credentials: the embedded defaults in sandbox and testing, refused in production.
TEST_MYPAY_AGENT_UID = "518169081001"
TEST_MYPAY_AGENT_KEY = "2MrhtRYeF9wKZ4bKwzZoL8aZf26pWzIG"  # nosec B105  # the MyPay document's public test key
TEST_OPAY_MERCHANT = ("2000132", "5294y06JbISpM5x9", "v77hoKGq4kWxNNIS")
TEST_OPAY_PLATFORM = ("2012441", "bkuAEQufy2bpEng1", "B0lzARl9ZSdhW9jg")
TEST_SECRETS = frozenset({TEST_MYPAY_AGENT_KEY, *TEST_OPAY_MERCHANT[1:], *TEST_OPAY_PLATFORM[1:]})


class ConfigError(ValueError):
    """A setting the portal refuses to start with; the message names the setting and what to do."""


# name: (default, meaning). A default of None means "derived" (see load_settings).
SETTINGS: dict[str, tuple[object, str]] = {
    "DATABASE_URL": (None, "SQLAlchemy URL; default a SQLite file in instance/; PostgreSQL in production"),
    "DATABASE_POOL_SIZE": (
        None,
        "connections each process keeps open to a server database (PostgreSQL); default GUNICORN_THREADS (8) + 2, "
        "one for every request thread and two for the live overview's workers",
    ),
    "SECRET_KEY": (None, "session signing; default generated once into instance/secret_key"),
    "PORTAL_DATA_KEY": (None, "encrypts provider secrets and card tokens; default generated once into instance/"),
    "PORTAL_BASE_URL": ("http://127.0.0.1:5000", "public address used in return and callback URLs"),
    "PROVIDER_ENV": (
        None,
        "sandbox (the simulated providers at SANDBOX_URL), testing (providers' test systems), production; "
        "default sandbox only for a loopback http PORTAL_BASE_URL, otherwise it must be set",
    ),
    "SANDBOX_URL": (None, "sandbox only: the sandbox server; default http://127.0.0.1:<PORTAL_BASE_URL's port + 1>"),
    "OEN_API_URL": (None, "Oen Tech API base, by PROVIDER_ENV"),
    "OEN_CHECKOUT_URL": (None, "Oen hosted card page, a template with {merchant_id} and {id}"),
    "MYPAY_API_URL": (None, "MyPay agent endpoint, by PROVIDER_ENV"),
    "MYPAY_AGENT_UID": (None, "the operator's MyPay agent uid; the document's test agent in sandbox/testing only"),
    "MYPAY_AGENT_KEY": (None, "the operator's MyPay agent key (32 bytes); unset in production means MyPay is off"),
    "MYPAY_AGENT_NEXT_KEY": ("", "the next MyPay agent key, accepted for decryption while keys rotate"),
    "OPAY_API_URL": (None, "O'Pay base; /WxAPI/Create and /WxAPI/QueryTradeInfo are appended"),
    "OPAY_PLATFORM_ID": ("", "O'Pay platform id (platform mode); unset for merchant mode"),
    "OPAY_PLATFORM_HASH_KEY": ("", "O'Pay platform HashKey"),
    "OPAY_PLATFORM_HASH_IV": ("", "O'Pay platform HashIV"),
    "PROVIDER_TIMEOUT_S": (10, "seconds per provider call"),
    "CHECKOUT_LINK_TTL_H": (168, "hours before a customer link expires"),
    "CALLBACK_RETENTION_DAYS": (90, "days a refused or unconfirmed callback is kept (purge-callbacks)"),
    "RATELIMIT_STORAGE_URI": ("memory://", "Flask-Limiter storage; redis://... when more than one process"),
    "RATELIMIT_ENABLED": (True, "rate limits on logins and customer links; off only where something else limits"),
    "TRUSTED_PROXIES": (0, "how many reverse proxies sit in front; their X-Forwarded-* headers are believed"),
    "SESSION_IDLE_MINUTES": (120, "a login ends after this long without a request"),
    "SESSION_ABSOLUTE_HOURS": (12, "a login ends this long after it began, whatever happens"),
    "MAIL_SERVER": (
        None,
        "SMTP server for customer links, receipts, reminders and staff notices; default in sandbox the sandbox's "
        "mail catcher (127.0.0.1), elsewhere none (no mail is sent until it is set)",
    ),
    "MAIL_PORT": (None, "SMTP port; default in sandbox the mail catcher's (PORTAL_BASE_URL's port + 2), else 587"),
    "MAIL_FROM": (None, "the sender of every mail; default no-reply@<PORTAL_BASE_URL's host>"),
    "MAIL_SECURITY": (None, "starttls, tls (implicit, port 465) or none; default none in sandbox, else starttls"),
    "MAIL_USERNAME": ("", "SMTP login, if the server asks for one"),
    "MAIL_PASSWORD": ("", "SMTP password"),
    "MAIL_TIMEOUT_S": (20, "seconds for the SMTP conversation of one mail"),
    "WORKER_POLL_S": (2, "seconds between the worker's looks at the outbox"),
    "RECONCILE_EVERY_MIN": (5, "minutes between the worker's queries of open checkouts at their providers"),
    "LOG_LEVEL": ("INFO", "log level"),
}

INT_SETTINGS = {
    "MAIL_PORT",
    "MAIL_TIMEOUT_S",
    "WORKER_POLL_S",
    "RECONCILE_EVERY_MIN",
    "DATABASE_POOL_SIZE",
    "TRUSTED_PROXIES",
    "PROVIDER_TIMEOUT_S",
    "CHECKOUT_LINK_TTL_H",
    "CALLBACK_RETENTION_DAYS",
    "SESSION_IDLE_MINUTES",
    "SESSION_ABSOLUTE_HOURS",
}


MIN_KEY_CHARS = 12  # SECRET_KEY and PORTAL_DATA_KEY; production asks for PRODUCTION_KEY_CHARS
PRODUCTION_KEY_CHARS = 32


def _instance_secret(instance_path: Path, name: str, nbytes: int) -> str:
    """Read a generated secret from instance/, creating it (mode 0600) on first use.

    Several processes may start at once on a fresh instance/: the secret is written whole to a file of its own, then
    linked into place, which only one of them can do; the others read the winner's. A reader never sees it half written.
    """
    path = instance_path / name
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=instance_path)  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(nbytes))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: use its secret
                os.link(temp, path)
        finally:
            os.unlink(temp)
    value = path.read_text().strip()
    if len(value) < MIN_KEY_CHARS:
        raise ConfigError(f"{path} is empty or too short: delete it to have a new secret generated, or set it.")
    return value


def _check_key(config: dict, name: str) -> None:
    """A session-signing or encryption key that is empty or short is refused, whatever its source."""
    value = str(config.get(name) or "")
    need = PRODUCTION_KEY_CHARS if config.get("PROVIDER_ENV") == "production" else MIN_KEY_CHARS
    if len(value.strip()) < need:
        raise ConfigError(f"{name} is empty or shorter than {need} characters: set a long random value.")


def _private_sqlite_file(url: str) -> None:
    """Create a SQLite database file readable by its owner only (it holds customers' data and encrypted secrets)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        return
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def defaults() -> dict[str, object]:
    """The embedded defaults that need no file or environment."""
    return {name: value for name, (value, _meaning) in SETTINGS.items() if value is not None}


BOOL_SETTINGS = {"RATELIMIT_ENABLED"}


def from_environment() -> dict[str, object]:
    """The settings present in the environment, typed."""
    found: dict[str, object] = {}
    for name in SETTINGS:
        if name in os.environ:
            raw = os.environ[name]
            if name in INT_SETTINGS:
                found[name] = int(raw)
            elif name in BOOL_SETTINGS:
                found[name] = parse_bool(name, raw)
            else:
                found[name] = raw
    return found


def parse_bool(name: str, raw: str) -> bool:
    """1/true/yes/on or 0/false/no/off; anything else is refused."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}.")


def derive(config: dict, instance_path: Path) -> None:
    """Fill the settings whose defaults depend on others or on instance/."""
    instance_path = Path(instance_path)
    if not config.get("DATABASE_URL"):
        instance_path.mkdir(parents=True, exist_ok=True)
        config["DATABASE_URL"] = f"sqlite:///{instance_path / 'portal.db'}"
    config.setdefault("SQLALCHEMY_DATABASE_URI", config["DATABASE_URL"])
    _private_sqlite_file(str(config["DATABASE_URL"]))
    config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(config))
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(instance_path, "secret_key", 48)
    if not config.get("PORTAL_DATA_KEY"):
        config["PORTAL_DATA_KEY"] = _instance_secret(instance_path, "data_key", 32)
    base = str(config.get("PORTAL_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
    config["PORTAL_BASE_URL"] = base
    env = config["PROVIDER_ENV"] = provider_env(config.get("PROVIDER_ENV"), base)
    if env == "sandbox":
        sandbox = str(config.get("SANDBOX_URL") or default_sandbox_url(base)).rstrip("/")
        config["SANDBOX_URL"] = sandbox
        urls = {name: sandbox + path for name, path in SANDBOX_PATHS.items()}
    else:
        urls = PROVIDER_URLS[env]
    for name, url in urls.items():
        if not config.get(name):
            config[name] = url
    for name in ("SECRET_KEY", "PORTAL_DATA_KEY"):
        _check_key(config, name)
    derive_mail(config, env, base)
    if env == "production":  # no test default: MyPay stays off until the operator's own agent is set
        config["MYPAY_AGENT_UID"] = config.get("MYPAY_AGENT_UID") or ""
        config["MYPAY_AGENT_KEY"] = config.get("MYPAY_AGENT_KEY") or ""
        refuse_test_setup(config)
    else:
        config["MYPAY_AGENT_UID"] = config.get("MYPAY_AGENT_UID") or TEST_MYPAY_AGENT_UID
        config["MYPAY_AGENT_KEY"] = config.get("MYPAY_AGENT_KEY") or TEST_MYPAY_AGENT_KEY


MAIL_SECURITY = ("starttls", "tls", "none")


def derive_mail(config: dict, env: str, base: str) -> None:
    """Mail goes to the sandbox's catcher in sandbox, nowhere until MAIL_SERVER is set elsewhere."""
    parts = urlsplit(base)
    sandbox = env == "sandbox"
    if not config.get("MAIL_SERVER"):
        config["MAIL_SERVER"] = "127.0.0.1" if sandbox else ""
    if not config.get("MAIL_PORT"):
        config["MAIL_PORT"] = (parts.port or 80) + 2 if sandbox else 587
    if not config.get("MAIL_FROM"):
        config["MAIL_FROM"] = f"no-reply@{parts.hostname or 'localhost'}"
    security = str(config.get("MAIL_SECURITY") or ("none" if sandbox else "starttls")).lower()
    if security not in MAIL_SECURITY:
        raise ConfigError(f"MAIL_SECURITY must be starttls, tls or none, not {security!r}.")
    config["MAIL_SECURITY"] = security
    plain = security == "none" and config["MAIL_SERVER"] and not is_loopback_host(str(config["MAIL_SERVER"]))
    if env == "production" and plain:
        raise ConfigError("MAIL_SECURITY=none sends mail unencrypted over the network: use starttls or tls.")


def engine_options(config: dict) -> dict:
    """SQLAlchemy's pool for a server database, sized for the process's threads (each connection is checked before
    use by extensions.check_connections_before_use, not by pool_pre_ping's round trip). A SQLite file's connection
    cannot go stale."""
    if str(config["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite"):
        return {}
    size = config.get("DATABASE_POOL_SIZE") or int(os.environ.get("GUNICORN_THREADS") or 8) + 2
    if int(size) < 1:
        raise ConfigError(f"DATABASE_POOL_SIZE must be at least 1, not {size}.")
    # A burst beyond the pool waits up to 10 s for a connection rather than opening ever more of them.
    return {"pool_size": int(size), "max_overflow": 2, "pool_timeout": 10}


def is_loopback_http(url: str) -> bool:
    """An http:// address on this machine (127.0.0.0/8, ::1 or localhost)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and is_loopback_host(parts.hostname or "")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provider_env(chosen, base_url: str) -> str:
    """PROVIDER_ENV as given; without one, sandbox only for a loopback http base URL, else a refusal."""
    if chosen:
        if chosen not in PROVIDER_ENVS:
            raise ConfigError(f"PROVIDER_ENV must be sandbox, testing or production, not {chosen!r}.")
        return chosen
    if is_loopback_http(base_url):
        return "sandbox"
    raise ConfigError(
        f"PROVIDER_ENV is not set and PORTAL_BASE_URL ({base_url}) is not a loopback http address: the simulated "
        "providers are the default only on this machine. Set PROVIDER_ENV=production (or testing for the providers' "
        "test systems, or sandbox to simulate them on purpose)."
    )


def default_sandbox_url(base_url: str) -> str:
    """The sandbox server beside the portal: same loopback host, the next port (make run's SANDBOX_PORT default)."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"http://127.0.0.1:{port + 1}"


def refuse_test_setup(config: dict) -> None:
    """Production takes no document test credential and no simulated or plain-http provider address."""
    for name in SANDBOX_PATHS:
        url = str(config.get(name) or "")
        parts = urlsplit(url.replace("{merchant_id}", "merchant"))
        if parts.scheme != "https" or is_loopback_host(parts.hostname or ""):
            raise ConfigError(
                f"PROVIDER_ENV=production refuses {name}={url!r}: production talks only to the providers' https "
                "addresses, never to a sandbox. Unset it (the providers' production addresses are built in)."
            )
    if config.get("MYPAY_AGENT_UID") == TEST_MYPAY_AGENT_UID:
        raise ConfigError(
            "PROVIDER_ENV=production refuses MYPAY_AGENT_UID: it is the MyPay document's test agent. "
            "Set your own agent uid and key, or unset both (MyPay is then off)."
        )
    for name in ("MYPAY_AGENT_KEY", "MYPAY_AGENT_NEXT_KEY", "OPAY_PLATFORM_HASH_KEY", "OPAY_PLATFORM_HASH_IV"):
        if config.get(name) and config[name] in TEST_SECRETS:
            raise ConfigError(
                f"PROVIDER_ENV=production refuses {name}: it is a public test value from a provider's document."
            )
    if config.get("OPAY_PLATFORM_ID") == TEST_OPAY_PLATFORM[0]:
        raise ConfigError("PROVIDER_ENV=production refuses OPAY_PLATFORM_ID: it is O'Pay's stage platform.")


def is_test_credential(value: str | None) -> bool:
    """Whether a provider secret is one of the documents' published test values."""
    return bool(value) and value in TEST_SECRETS
