"""The one typed settings object.

Sources, strongest first: explicit arguments, ``CALLKPI_*`` environment variables,
the YAML file (``--config`` or ``CALLKPI_CONFIG``), then the defaults below.
Nested keys can be set from the environment with ``__``, for example
``CALLKPI_KPI__SERVICE_LEVEL_SECONDS=30``.

One file (about 400 lines) on purpose: one `Settings` for every process, with
each setting's reason beside it; features' schemas that are more than settings
(alert rules, pay periods and scorecards) live beside it in services/core/.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.core.alert_rules import AlertSettings
from services.core.auth import AuthSettings
from services.core.configfile import digest, error_lines, read_yaml
from services.core.events import WITHHELD_CALLER_IDS, DoorRules, withheld_matcher
from services.core.kpi import (
    AGENT_FIELDS,
    DEFAULT_MISSES,
    REASON_OUTCOME,
    UNANSWERED_OUTCOMES,
    Bases,
)
from services.core.payroll_rules import PeriodSettings, ScorecardError, Scorecards
from services.core.payroll_rules import load as load_scorecards
from services.core.qa_rules import QaSettings
from services.core.staffing import SCHEDULE_FIELDS
from services.core.staffing_rules import StaffingSettings
from services.core.wallboard_rules import WallboardSettings

UNASSIGNED_TEAM = "unassigned"

# A record's bytes beyond its envelope's items: Kafka's batch and record headers
# (aiokafka's estimate_size_in_bytes: 61 + ~20) and the envelope's own keys, with room.
RECORD_ALLOWANCE_BYTES = 512

# A development-only key. `callkpi dev` accepts it; production commands refuse to
# start with it so raw caller ids are never hashed with a key everyone knows.
DEV_HASH_KEY = "callkpi-development-key-change-me"


class ConfigError(Exception):
    """A configuration problem, with the offending key named in the message."""


class KpiDefinitions(BaseModel):
    """Settings that change what a figure means. Stamped on every response."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_level_seconds: int = Field(20, ge=0, le=3600)
    short_abandon_seconds: int = Field(5, ge=0, le=600)
    fcr_window_hours: int = Field(72, ge=1, le=24 * 31)
    satisfied_min_score: int = Field(4, ge=1, le=5)
    # A state held longer than this is a lost event (a logout that never came, a
    # softphone that crashed), not work: it counts this long and no longer, so one
    # lost event cannot credit days of logged-in time to a pay period.
    max_state_hours: int = Field(12, ge=1, le=24 * 7)
    # Caller ids that are no customer (withheld, unknown, "0"), as regular
    # expressions matched against the whole id, ignoring case and blanks. Such calls
    # count everywhere but are not FCR candidates (fcr_unidentified counts them).
    # Applied at ingest, before hashing: changing it changes what is counted from
    # then on, not the calls already stored.
    withheld_caller_ids: tuple[str, ...] = WITHHELD_CALLER_IDS
    # The unanswered outcomes that count against the answer rate and against the
    # service level (core.kpi.DEFAULT_MISSES says why these). Read-time: a change
    # applies to every period, closed payroll periods excepted (their figures are
    # frozen when they close).
    answer_rate_misses: tuple[str, ...] = DEFAULT_MISSES
    service_level_misses: tuple[str, ...] = DEFAULT_MISSES

    @field_validator("answer_rate_misses", "service_level_misses")
    @classmethod
    def _known_outcomes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, name in enumerate(value):
            if name not in UNANSWERED_OUTCOMES:
                raise ValueError(
                    f"[{i}] {name!r} is not an unanswered outcome; one of "
                    f"{', '.join(UNANSWERED_OUTCOMES)}"
                )
        if len(set(value)) != len(value):
            raise ValueError("an outcome is listed twice")
        return value

    @property
    def bases(self) -> Bases:
        return Bases(self.answer_rate_misses, self.service_level_misses)

    @field_validator("withheld_caller_ids")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, pattern in enumerate(value):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"[{i}] {pattern!r} is not a regular expression: {exc}") from None
        return value

    @property
    def max_state_us(self) -> int:
        return self.max_state_hours * 3_600_000_000

    @property
    def fcr_window_us(self) -> int:
        return self.fcr_window_hours * 3_600_000_000

    def stamp(self) -> dict[str, Any]:
        data: dict[str, Any] = self.model_dump()
        data["hash"] = digest(data)[:12]
        return data


class AsteriskSettings(BaseModel):
    """How queue_log maps to events (docs/asterisk.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # One call per queue it entered, as Asterisk's statistics count (a call moved
    # from queue A to B is offered to both). False: one call per callid, counted
    # in the first queue it entered (callkpi's own attribution).
    call_per_queue: bool = True
    # SIP/1001, PJSIP/1001, Agent/1001, Local/1001@ctx/n -> 1001: the roster names
    # agents without the channel technology.
    strip_agent_technology: bool = True
    # An import holds lines this long (log time) to put them back in time order;
    # database exports are often sorted by something else. 0 disables.
    reorder_seconds: float = Field(60.0, ge=0, le=86_400)
    # EXITWITHKEY: the key the caller pressed -> the call.ended reason it means,
    # e.g. {"1": "callback", "2": "voicemail"}; an unlisted key is exit_key.
    exit_keys: dict[str, str] = Field(default_factory=dict)
    # WITHDRAW (Asterisk 16.25+: a caller taken out of the queue by the manager
    # action QueueWithdrawCaller) is how queue-callback modules take a waiting
    # caller out to call them back; a dialplan that uses it for something else
    # says so here.
    withdraw_reason: str = "callback"

    @field_validator("exit_keys")
    @classmethod
    def _exit_reasons(cls, value: dict[str, str]) -> dict[str, str]:
        for key, reason in value.items():
            _check_reason(f"[{key!r}]", reason)
            if not 1 <= len(key) <= 8:
                raise ValueError(f"[{key!r}]: a key is 1 to 8 characters")
        return value

    @field_validator("withdraw_reason")
    @classmethod
    def _withdraw(cls, value: str) -> str:
        _check_reason("", value)
        return value


def _check_reason(where: str, reason: str) -> None:
    if reason not in REASON_OUTCOME:
        raise ValueError(
            f"{where}{': ' if where else ''}{reason!r} is not a call.ended reason; one of "
            f"{', '.join(REASON_OUTCOME)}"
        )


class Team(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    name: str = ""
    queues: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLKPI_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # --- where things are -------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None, description="host:port[,host:port]; unset under `callkpi dev` = embedded broker"
    )
    database_url: str | None = Field(
        None, description="postgresql+asyncpg://…; unset under `callkpi dev` = embedded Postgres"
    )
    data_dir: Path = Path(".callkpi")
    hash_key: SecretStr = SecretStr(DEV_HASH_KEY)

    # --- time and definitions ---------------------------------------------
    timezone: str = "UTC"
    # The center's name on wallboards.
    center_name: str = Field("Center", min_length=1, max_length=200)
    kpi: KpiDefinitions = KpiDefinitions()
    teams: list[Team] = Field(default_factory=list)
    alerts: AlertSettings = AlertSettings()
    # Agents' time-in-state limits and the waiting calls tiles list (docs/wallboard.md)
    wallboard: WallboardSettings = WallboardSettings()
    periods: PeriodSettings = PeriodSettings()
    # Scorecards per role (docs/payroll.md#scorecards); relative to the config
    # file's directory when set there. Unset: closed periods carry no scores.
    scorecard_file: Path | None = None
    auth: AuthSettings = AuthSettings()
    asterisk: AsteriskSettings = AsteriskSettings()
    # Required agents, schedules, adherence, attendance, forecast (docs/staffing.md)
    staffing: StaffingSettings = StaffingSettings()
    # Abnormal figures for the listening sample (docs/qa.md)
    qa: QaSettings = QaSettings()

    # --- Kafka ---------------------------------------------------------------
    topic_prefix: str = "callkpi"
    # Partitions bound how many workers can share the load (workers <= partitions).
    # 8 lets a small deployment grow to 8 worker processes without re-partitioning.
    partitions: int = Field(8, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=7)
    # The largest record any callkpi producer sends (aiokafka's max_request_size;
    # 1 MiB, as Apache Kafka's default message.max.bytes allows). Envelopes of
    # events, FCR facts and alerts are split to fit it, whatever the batch and the
    # key distribution. Raise it only with the broker's and topics' own limits.
    kafka_max_request_bytes: int = Field(1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)

    # --- ingest --------------------------------------------------------------
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(20_000, ge=1)
    # An event stamped further ahead of ingest's clock is refused (422): a PBX
    # clock set wrong, or a typo. Events of any past year after 1970 are accepted,
    # so histories import. One hour covers clocks that drift or jump by minutes.
    max_future_seconds: int = Field(3600, ge=0, le=31 * 86_400)
    # The largest single event ingest accepts, as encoded JSON (extra fields
    # included); it must leave room in a Kafka record (kafka_max_request_bytes).
    max_event_bytes: int = Field(64 * 1024, ge=1024)
    # Events of one request are packed per partition into records of at most this
    # many events: one Kafka record per few hundred events is what lets a Python
    # worker reach tens of thousands of events/s (one record costs ~130 µs in Faust).
    envelope_max_events: int = Field(500, ge=1, le=10_000)

    # --- worker --------------------------------------------------------------
    # Envelopes coalesced into one Postgres transaction. Bigger batches amortise the
    # commit and coalesce repeated writes to the same call (a call split across two
    # batches is written, and its FCR fact sent, twice); `take_within` bounds the
    # latency cost when traffic is light. Measured on a 300k backlog, 2 cores,
    # before agent time: 40 → 16.5-18.0k events/s, 100 → 20.9k, 200 → 20.0k with
    # freshness p99 rising from 1.6 s to 1.8 s. With agent time and the worker's
    # prepare/commit overlap, 100 and 200 are within the bench's noise (15-19k).
    worker_take_max: int = Field(100, ge=1)
    worker_take_within_seconds: float = Field(0.05, gt=0)
    # Calls kept in the worker's write-through cache (Postgres stays authoritative).
    call_cache_size: int = Field(200_000, ge=0)
    # Seconds between sweeps that finalise FCR windows as the event-time watermark moves.
    fcr_sweep_seconds: float = Field(5.0, gt=0)
    # A worker is not ready (/readyz 503) once records wait on one of its
    # partitions and its committed offset there has not moved for this long. A
    # healthy worker commits within seconds even while catching up on a month
    # (batches commit every ~0.1-2 s); a minute without progress is a stall, not
    # a slow batch. docs/operations.md#stalls.
    worker_stall_seconds: float = Field(60.0, ge=5, le=86_400)
    # How often each process asks the broker for end and committed offsets (lag,
    # stalls, lost topics): one metadata and two offset requests per poll.
    pipeline_poll_seconds: float = Field(2.0, ge=0.2, le=60)

    # --- storage -------------------------------------------------------------
    retention_days: int = Field(400, ge=1, description="bucket rows older than this are deleted")
    call_state_retention_days: int = Field(
        14, ge=1, description="assembled call state kept for late events"
    )
    # The worker keeps and rewrites only this much of each agent's timeline (before
    # its newest event); older state events are appended once to agent_state_events
    # and read back only for an event that falls before the tail. Rewriting the
    # whole retained timeline made a month's re-count slow down with every day of
    # history (docs/architecture.md). Half an hour holds the network's and a PBX's
    # usual lateness; a tail too short costs a read per late event, never a figure.
    agent_timeline_tail_seconds: int = Field(1800, ge=1)

    # --- API -----------------------------------------------------------------
    metrics_include_agents: bool = False
    # A call whose end event never arrives (a lost CTI event, a PBX restart) would
    # otherwise wait in the live queue forever and pin longest_wait; no real caller
    # waits four hours.
    waiting_call_max_age_seconds: int = Field(4 * 3600, ge=60)
    # A live-window read of one entity is answered again from memory while no
    # transaction has committed since and for at most this long (what the clock
    # moves: waits, time in state); 0: never. A second is the
    # wallboard's own pace (services/api/read_cache.py).
    read_cache_seconds: float = Field(1.0, ge=0, le=60)
    # Wallboard feeds one API process holds open (GET /v1/stream); more are refused
    # with 503. Measured: 500 clients on 2 cores with updates within a second
    # (docs/scaling.md); each costs a socket and its per-entity buffer.
    stream_max_clients: int = Field(2000, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # A client must send its request head within this of connecting (or of the
    # previous response), and its body within the second of the head: a client
    # that trickles them is disconnected (services/api/http_limits.py). 8 MiB at
    # 1 Mbit/s is 67 s, so the body bound suits any real network.
    http_head_timeout_seconds: float = Field(10.0, gt=0, le=600)
    http_body_timeout_seconds: float = Field(120.0, gt=0, le=3600)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _roster_consistent(self) -> Settings:
        seen_teams: set[str] = set()
        queue_owner: dict[str, str] = {}
        agent_owner: dict[str, str] = {}
        for i, team in enumerate(self.teams):
            if team.id in seen_teams:
                raise ValueError(f"teams[{i}].id: duplicate team id {team.id!r}")
            if team.id == UNASSIGNED_TEAM:
                raise ValueError(f"teams[{i}].id: {UNASSIGNED_TEAM!r} is reserved")
            seen_teams.add(team.id)
            for q in team.queues:
                if q in queue_owner:
                    raise ValueError(
                        f"teams[{i}].queues: queue {q!r} already belongs to team {queue_owner[q]!r}"
                    )
                queue_owner[q] = team.id
            for a in team.agents:
                if a in agent_owner:
                    raise ValueError(
                        f"teams[{i}].agents: agent {a!r} already belongs to team {agent_owner[a]!r}"
                    )
                agent_owner[a] = team.id
        for i, rule in enumerate(self.alerts.rules):
            unknown = [t for t in rule.ids if rule.kind == "team" and t not in seen_teams]
            if unknown:
                raise ValueError(f"alerts.rules[{i}].ids: unknown team(s) {unknown}")
            strangers = [a for a in rule.ids if rule.kind == "agent" and a not in agent_owner]
            if strangers:
                # an agent outside the roster has no team to be compared with
                raise ValueError(f"alerts.rules[{i}].ids: agent(s) {strangers} not in any team")
        return self

    @model_validator(mode="after")
    def _event_fits_a_record(self) -> Settings:
        room = self.kafka_max_request_bytes - RECORD_ALLOWANCE_BYTES
        if self.max_event_bytes > room:
            raise ValueError(
                f"max_event_bytes: {self.max_event_bytes} leaves no room in a Kafka record of "
                f"kafka_max_request_bytes={self.kafka_max_request_bytes} (at most {room})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # --- derived -------------------------------------------------------------
    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def door_rules(self) -> DoorRules:
        """What ingest (and the worker, for plain events on the topic) refuses."""
        return DoorRules(
            withheld=withheld_matcher(self.kpi.withheld_caller_ids),
            max_future_us=self.max_future_seconds * 1_000_000,
            max_event_bytes=self.max_event_bytes,
        )

    @cached_property
    def team_of_queue(self) -> dict[str, str]:
        return {q: t.id for t in self.teams for q in t.queues}

    @cached_property
    def team_of_agent(self) -> dict[str, str]:
        return {a: t.id for t in self.teams for a in t.agents}

    def roster(self, kind: str) -> list[str]:
        """The configured entities of a kind (center: "all"), in config order."""
        if kind == "center":
            return ["all"]
        if kind == "team":
            return [t.id for t in self.teams]
        if kind == "queue":
            return [q for t in self.teams for q in t.queues]
        if kind == "agent":
            return [a for t in self.teams for a in t.agents]
        raise ValueError(f"unknown entity kind {kind!r}")

    @cached_property
    def scorecards(self) -> Scorecards | None:
        if self.scorecard_file is None:
            return None
        # a scorecard scores the catalogue's figures and the schedule's (attendance)
        return load_scorecards(self.scorecard_file, {*AGENT_FIELDS, *SCHEDULE_FIELDS})

    @cached_property
    def team_names(self) -> dict[str, str]:
        return {t.id: t.name for t in self.teams}

    def agent_team(self, agent_id: str) -> str:
        return self.team_of_agent.get(agent_id, UNASSIGNED_TEAM)

    def queue_team(self, queue_id: str) -> str:
        return self.team_of_queue.get(queue_id, UNASSIGNED_TEAM)

    @property
    def call_state_retention_us(self) -> int:
        return self.call_state_retention_days * 86_400_000_000

    @property
    def agent_timeline_tail_us(self) -> int:
        return self.agent_timeline_tail_seconds * 1_000_000

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def fcr_topic(self) -> str:
        return f"{self.topic_prefix}.fcr"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}.alerts"

    @property
    def worker_group(self) -> str:
        """The workers' consumer group (Faust names it after the app)."""
        return f"{self.topic_prefix}-worker"

    @property
    def all_topics(self) -> list[str]:
        return [self.events_topic, self.fcr_topic, self.alerts_topic]


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by CALLKPI_CONFIG (set by --config)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("CALLKPI_CONFIG")
        if not path:
            return {}
        data = load_yaml(Path(path))
        card = data.get("scorecard_file")
        if isinstance(card, str) and not Path(card).is_absolute():
            # a path in the file is read from where the file is, not the caller's cwd
            data["scorecard_file"] = str(Path(path).parent / card)
        return data


def load_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path, "config file", ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of keys")
    return data


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one message per bad key, and
    read the files it names (the scorecard file)."""
    from pydantic import ValidationError

    if config is not None:
        os.environ["CALLKPI_CONFIG"] = str(config)
    source = os.environ.get("CALLKPI_CONFIG") or "environment/defaults"
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = error_lines(exc, "docs/configuration.md")
        raise ConfigError(f"invalid configuration ({source}):\n" + "\n".join(lines)) from exc
    # Files the configuration names are read once it is valid, here rather than in
    # its validators: a bad scorecard file still stops the start, naming the file.
    try:
        _ = settings.scorecards
    except ScorecardError as exc:
        raise ConfigError(f"invalid configuration ({source}):\n{exc}") from None
    return settings
