"""Every setting: its environment variable, its embedded default and its meaning."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# The providers' public endpoints by PROVIDER_ENV; "sandbox" points at the portal's own simulators.
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

# The MyPay test agent from the provider document: the embedded default, never a production credential.
TEST_MYPAY_AGENT_UID = "518169081001"
TEST_MYPAY_AGENT_KEY = "2MrhtRYeF9wKZ4bKwzZoL8aZf26pWzIG"

# name: (default, meaning). A default of None means "derived" (see load_settings).
SETTINGS: dict[str, tuple[object, str]] = {
    "DATABASE_URL": (None, "SQLAlchemy URL; default a SQLite file in instance/; PostgreSQL in production"),
    "SECRET_KEY": (None, "session signing; default generated once into instance/secret_key"),
    "PORTAL_DATA_KEY": (None, "encrypts provider secrets and card tokens; default generated once into instance/"),
    "PORTAL_BASE_URL": ("http://127.0.0.1:5000", "public address used in return and callback URLs"),
    "PROVIDER_ENV": ("sandbox", "sandbox (built-in simulators), testing (providers' test systems), production"),
    "OEN_API_URL": (None, "Oen Tech API base, by PROVIDER_ENV"),
    "OEN_CHECKOUT_URL": (None, "Oen hosted card page, a template with {merchant_id} and {id}"),
    "MYPAY_API_URL": (None, "MyPay agent endpoint, by PROVIDER_ENV"),
    "MYPAY_AGENT_UID": (TEST_MYPAY_AGENT_UID, "the operator's MyPay agent uid"),
    "MYPAY_AGENT_KEY": (TEST_MYPAY_AGENT_KEY, "the operator's MyPay agent key (32 bytes)"),
    "MYPAY_AGENT_NEXT_KEY": ("", "the next MyPay agent key, accepted for decryption while keys rotate"),
    "OPAY_API_URL": (None, "O'Pay base; /WxAPI/Create and /WxAPI/QueryTradeInfo are appended"),
    "OPAY_PLATFORM_ID": ("", "O'Pay platform id (platform mode); unset for merchant mode"),
    "OPAY_PLATFORM_HASH_KEY": ("", "O'Pay platform HashKey"),
    "OPAY_PLATFORM_HASH_IV": ("", "O'Pay platform HashIV"),
    "PROVIDER_TIMEOUT_S": (10, "seconds per provider call"),
    "CHECKOUT_LINK_TTL_H": (168, "hours before a customer link expires"),
    "RATELIMIT_STORAGE_URI": ("memory://", "Flask-Limiter storage; redis://... when more than one process"),
    "SESSION_IDLE_MINUTES": (120, "a login ends after this long without a request"),
    "SESSION_ABSOLUTE_HOURS": (12, "a login ends this long after it began, whatever happens"),
    "SANDBOX_LATENCY_MS": (0, "sandbox only: delay before every simulated provider answer"),
    "LOG_LEVEL": ("INFO", "log level"),
}

INT_SETTINGS = {
    "PROVIDER_TIMEOUT_S",
    "CHECKOUT_LINK_TTL_H",
    "SESSION_IDLE_MINUTES",
    "SESSION_ABSOLUTE_HOURS",
    "SANDBOX_LATENCY_MS",
}


def _instance_secret(instance_path: Path, name: str, nbytes: int) -> str:
    """Read a generated secret from instance/, creating it (mode 0600) on first use."""
    path = instance_path / name
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


def defaults() -> dict[str, object]:
    """The embedded defaults that need no file or environment."""
    return {name: value for name, (value, _meaning) in SETTINGS.items() if value is not None}


def from_environment() -> dict[str, object]:
    """The settings present in the environment, typed."""
    found: dict[str, object] = {}
    for name in SETTINGS:
        if name in os.environ:
            raw = os.environ[name]
            found[name] = int(raw) if name in INT_SETTINGS else raw
    return found


def derive(config: dict, instance_path: Path) -> None:
    """Fill the settings whose defaults depend on others or on instance/."""
    instance_path = Path(instance_path)
    if not config.get("DATABASE_URL"):
        instance_path.mkdir(parents=True, exist_ok=True)
        config["DATABASE_URL"] = f"sqlite:///{instance_path / 'portal.db'}"
    config.setdefault("SQLALCHEMY_DATABASE_URI", config["DATABASE_URL"])
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(instance_path, "secret_key", 48)
    if not config.get("PORTAL_DATA_KEY"):
        config["PORTAL_DATA_KEY"] = _instance_secret(instance_path, "data_key", 32)
    env = config.get("PROVIDER_ENV", "sandbox")
    base = str(config.get("PORTAL_BASE_URL", "http://127.0.0.1:5000")).rstrip("/")
    config["PORTAL_BASE_URL"] = base
    if env == "sandbox":
        urls = {
            "OEN_API_URL": f"{base}/sandbox/oen/api",
            "OEN_CHECKOUT_URL": base + "/sandbox/oen/checkout/{merchant_id}/subscription/create/{id}",
            "MYPAY_API_URL": f"{base}/sandbox/mypay/api/agent",
            "OPAY_API_URL": f"{base}/sandbox/opay",
        }
    elif env in PROVIDER_URLS:
        urls = PROVIDER_URLS[env]
    else:
        raise ValueError(f"PROVIDER_ENV must be sandbox, testing or production, not {env!r}")
    for name, url in urls.items():
        if not config.get(name):
            config[name] = url
