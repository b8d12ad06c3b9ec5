"""Every setting, from environment variables prefixed QRFLOW_ (or a .env file); .env.example lists them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# URL schemes of kombu's AMQP transports: the broker is RabbitMQ.
RABBITMQ_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QRFLOW_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("data")
    # Empty means the embedded default: a SQLite file in data_dir.
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Celery's broker. Empty: the Redis at redis_url. `amqp://user:password@host:5672/vhost`: RabbitMQ, with
    # quorum queues and publisher confirms (celeryconfig.py says what differs); Redis still keeps the link
    # cache, caps, sessions, rate limits and Celery's results. docs/operations.md, "Choosing a broker".
    broker_url: str = ""

    # Where people reach the redirect: dynamic codes encode {public_base_url}/r/{slug}.
    # Empty means http://{api_host}:{api_port}.
    public_base_url: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    flower_host: str = "127.0.0.1"
    flower_port: int = Field(5555, ge=1, le=65535)
    flower_user: str = "admin"
    # Empty in development means: generate one on first start and keep it in data_dir.
    flower_password: SecretStr = SecretStr("")
    # What the gateway's /metrics asks for, as `Authorization: Bearer <token>` (Prometheus sends it, see
    # deploy/prometheus.yml). Empty: /metrics is open, which only development allows.
    metrics_token: SecretStr = SecretStr("")

    # Set by `qrflow up` for its services: /readyz echoes it (X-Qrflow-Instance), so `up` knows that the
    # gateway answering on its port is its own (app/kit/instance.py). Empty outside `qrflow up`.
    instance_id: str = ""

    log_level: str = "INFO"
    # Empty means console in development, json in production.
    log_format: Literal["", "json", "console"] = ""

    # A code still pending this long after its render was requested gets its render published again
    # (the broker was down when the gateway published, or the message was lost with the broker's data).
    render_republish_after_seconds: int = Field(120, ge=5)
    render_republish_interval_seconds: float = Field(60.0, gt=0)
    worker_concurrency: int = Field(0, ge=0)  # 0: one process per core
    # How far workers lower their CPU priority (nice) below the gateway's. On a host they share, the
    # redirect (someone waiting on a phone) goes first and a backlog, durable in the spool and the queue,
    # waits: measured in the redirect and ingest benchmarks (docs/benchmarks.md). 0 keeps them level.
    worker_nice: int = Field(10, ge=0, le=19)
    # Celery's time limits for every task (celeryconfig.py). A render takes well under a second and a
    # chunk hands its rest on at half the soft limit: the limits are for a task that is stuck. Past the
    # soft one the task gets SoftTimeLimitExceeded and stops cleanly (0: none); past the hard one its pool
    # process is SIGKILLed. Both stay well under the broker's visibility_timeout (900 s).
    task_soft_time_limit_seconds: float = Field(30.0, ge=0, le=600)
    task_time_limit_seconds: float = Field(60.0, gt=0, le=600)
    # A code whose render died (its process killed: out of memory, the hard time limit), ran past the soft
    # limit or raised this many times is `failed` with the reason, instead of being tried for ever.
    render_max_attempts: int = Field(3, ge=1, le=10)

    # Safety (app/gateway/ratelimit.py, idempotency.py, limits.py).
    # Requests per API key on /v1, a moving window in Redis, e.g. "600/minute"; empty turns it off.
    # One noisy client must not starve the others; if Redis is down the limiter lets requests through.
    rate_limit: str = ""
    # Requests per client IP on /r/{slug}; empty (off) by default, because many scanners can share one
    # IP (a venue's Wi-Fi, a carrier's NAT) and a refused scan is a printed code that does not work.
    redirect_rate_limit: str = ""
    # How long a POST's Idempotency-Key is remembered: clients retry within minutes; a day covers
    # a retry after an outage without keeping records for ever.
    idempotency_ttl_seconds: int = Field(86400, ge=60)
    # Bodies past this are refused (413) before they are read into memory; a create request is < 10 KiB.
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # POST /v1/batches only: 10,000 items of ~1.6 KiB each (a URL item is ~100 bytes, a vCard ~400, and no
    # content can pass ~3 KiB). The gateway holds the body and its parsed form while it validates.
    max_batch_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # Codes per qrcodes.render_batch message: few messages per batch, yet enough of them to keep every
    # pool process busy, and little rework when a worker dies mid-chunk.
    batch_chunk_size: int = Field(100, ge=1, le=1000)
    # Render cost (app/qrcodes/render_cost.py), in estimated seconds of a worker's core: one code over
    # max_render_cost is refused (422), so a render never holds a worker process for long or needs more
    # than about a gigabyte (4 s of module colours is ~70 million pixels, ~1 GB); a batch whose
    # codes add up to more than max_batch_render_cost is refused, so one request cannot queue hours.
    max_render_cost: float = Field(4.0, gt=0)
    max_batch_render_cost: float = Field(1800.0, gt=0)
    # Address space of each render process (RLIMIT_AS, in MiB): a render past it fails with MemoryError
    # instead of taking the host's memory. 0: no limit.
    worker_max_memory_mb: int = Field(2048, ge=0)
    # Origins allowed to call the API from a browser, comma-separated ("*" for any); empty: no CORS
    # headers at all, so browsers on other origins cannot read responses.
    cors_origins: str = ""

    # Proxies whose X-Forwarded-For is believed (comma-separated IPs or CIDRs, "*" for any): the client
    # address of a scan and of the per-IP limit. Empty: the connecting address is the client.
    trusted_proxies: str = ""

    # Where rendered images and uploaded logos live (app/kit/storage.py, docs/storage.md). Empty: a directory in
    # data_dir, which only the processes of one host share. s3://bucket/prefix: an S3-compatible object
    # store every host reaches; credentials come from boto3's chain (AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE, an instance
    # role), never from a QRFLOW_ setting. Empty endpoint: AWS itself; empty region: the chain's.
    storage_url: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""

    # Scans (app/scans/spool.py): each redirect appends its event to a spool file in data_dir/spool; a
    # shipper process publishes them as one scans.record task per segment of up to scan_batch_max_events,
    # closed after at most scan_flush_interval_ms. Past scan_spool_max_bytes (a very long broker outage)
    # new scans are still redirected but dropped and counted (qrflow_scans_dropped_total).
    scan_batch_max_events: int = Field(1000, ge=1, le=10_000)
    scan_flush_interval_ms: int = Field(250, ge=10, le=10_000)
    scan_spool_max_bytes: int = Field(1024**3, ge=1024 * 1024)
    # Where the spool lives; empty: data_dir/spool. Many hosts share one image store but each keeps its
    # spool on a disk of its own (docs/scaling.md): a dead host's scans wait there until it, or a host
    # that mounts its disk, starts a gateway again.
    scan_spool_dir: Path | None = None
    # A GeoIP2/GeoLite2 Country or City .mmdb file for scan countries; empty: country unknown.
    geoip_db: Path | None = None
    # Store each scan's IP with its last octet (IPv4) or last 80 bits (IPv6) zeroed. Raw IPs never are.
    keep_anonymized_ip: bool = False

    # Analytics (app/analytics/rollup.py): beat folds new scans into hourly and daily buckets this often.
    rollup_interval_seconds: float = Field(60.0, gt=0)
    # Delete raw scans of UTC days more than this many days ago, once rolled up (the analytics stay);
    # 0 keeps them for ever. PostgreSQL drops whole months: a month goes once its last day is this old.
    scan_retention_days: int = Field(0, ge=0)
    # PostgreSQL: beat keeps the monthly partitions of `scans` this many months ahead of the current one
    # (app/scans/partitions.py).
    scan_partitions_ahead: int = Field(3, ge=1, le=24)
    # API keys' last_used_at (app/identity/usage.py): each gateway pushes the keys it saw to Redis this
    # often, and beat writes them to the database this often; no request writes it.
    key_usage_push_seconds: float = Field(5.0, gt=0)
    key_usage_flush_seconds: float = Field(60.0, gt=0)
    # An API key the gateway verified is trusted from memory for this long (app/identity/verified_keys.py):
    # a revoked key is refused at most this many seconds after its revocation commits. 0: every request
    # reads its key.
    api_key_cache_seconds: float = Field(2.0, ge=0)

    # Dashboard sessions (app/identity/sessions.py), kept in Redis: one ends after this long without a
    # request, and in any case this long after sign-in.
    session_idle_seconds: int = Field(8 * 3600, ge=60)
    session_absolute_seconds: int = Field(7 * 86400, ge=60)
    # Failed sign-ins (app/identity/throttle.py): past this many for one email, or from one client address,
    # within sign_in_throttle_seconds, sign-in is refused (429) until the window has passed.
    sign_in_failures_per_email: int = Field(5, ge=1)
    sign_in_failures_per_client: int = Field(20, ge=1)
    sign_in_throttle_seconds: int = Field(900, ge=1)

    # Webhooks (app/webhooks/): endpoints' signing secrets are stored encrypted with this Fernet key
    # (`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`);
    # several, comma-separated, to rotate it (the first encrypts, any decrypts). Empty in development:
    # one is generated and kept in data_dir; production requires it.
    webhook_secret_key: SecretStr = SecretStr("")
    # Endpoints on private, loopback or link-local addresses are refused (SSRF) unless this is true: a
    # self-hoster's LAN, or tests.
    webhook_allow_private: bool = False
    # Seconds between a failed attempt and the next, with ±20% jitter; after the last, the delivery is dead.
    webhook_retry_schedule: str = "5,60,600,3600,10800,28800,43200"
    # Deliveries in flight at once per endpoint: a slow receiver holds at most this many worker threads.
    webhook_endpoint_concurrency: int = Field(4, ge=1, le=64)
    # A due delivery still pending this long after it was due is published again by the beat sweeper
    # (its message was lost: the broker was down at commit, or a worker died holding it).
    webhook_sweep_after_seconds: float = Field(120.0, gt=0)
    webhook_sweep_interval_seconds: float = Field(10.0, gt=0)
    # An endpoint whose every attempt failed for this long is disabled.
    webhook_disable_after_seconds: float = Field(3 * 86400, gt=0)

    @field_validator("rate_limit", "redirect_rate_limit")
    @classmethod
    def _one_rate_limit(cls, value: str) -> str:
        value = value.strip()
        if value:
            from limits import parse_many

            parsed = parse_many(value)  # ValueError names the string it cannot parse
            if len(parsed) != 1 or parsed[0].amount < 1:
                raise ValueError(f"expected one limit like '600/minute', got {value!r}")
        return value

    @model_validator(mode="after")
    def _fill_derived_defaults(self) -> Settings:
        if not self.public_base_url and self.environment == "production":
            # Guessed from api_host it would be http://0.0.0.0:8000 behind a proxy: printed on every code.
            raise ValueError(
                "set QRFLOW_PUBLIC_BASE_URL in production (e.g. https://qr.example.com): dynamic codes encode "
                "it for ever, and the gateway's own address is not where people reach it"
            )
        if not self.public_base_url:
            self.public_base_url = f"http://{self.api_host}:{self.api_port}"
        self.public_base_url = self.public_base_url.rstrip("/")
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'qrflow.db').resolve()}"
        return self

    @field_validator("storage_url")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.startswith("s3://") or not value[5:].split("/", 1)[0]):
            raise ValueError(f"expected s3://bucket or s3://bucket/prefix (or empty: data_dir), got {value!r}")
        return value

    @model_validator(mode="after")
    def _soft_time_limit_first(self) -> Settings:
        if self.task_soft_time_limit_seconds >= self.task_time_limit_seconds:
            raise ValueError("task_soft_time_limit_seconds must be under task_time_limit_seconds (or 0: none)")
        return self

    @property
    def secure_cookies(self) -> bool:
        """Cookies go only over HTTPS when people reach the gateway through it."""
        return self.public_base_url.startswith("https://")

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def broker_is_rabbitmq(self) -> bool:
        return self.celery_broker_url.startswith(RABBITMQ_SCHEMES)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sync_database_url(self) -> str:
        """Workers, migrations and the CLI: blocking drivers (pysqlite, psycopg)."""
        return _with_driver(self.database_url, sqlite="pysqlite", postgresql="psycopg")

    @property
    def async_database_url(self) -> str:
        """The gateway: asyncio drivers (aiosqlite, psycopg's async mode)."""
        return _with_driver(self.database_url, sqlite="aiosqlite", postgresql="psycopg")

    @property
    def spool_dir(self) -> Path:
        return self.scan_spool_dir or self.data_dir / "spool"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def log_renderer(self) -> Literal["json", "console"]:
        if self.log_format:
            return self.log_format
        return "json" if self.environment == "production" else "console"


def _with_driver(url: str, *, sqlite: str, postgresql: str) -> str:
    scheme, rest = url.split("://", 1)
    dialect = scheme.split("+", 1)[0]
    if dialect == "sqlite":
        return f"sqlite+{sqlite}://{rest}"
    if dialect in ("postgresql", "postgres"):
        return f"postgresql+{postgresql}://{rest}"
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
