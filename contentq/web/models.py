"""The API's contract: the body model of every answer, and the one error model of every 4xx and 503.

Answers are checked against these models on the way out (FastAPI's response_model), so the OpenAPI document
and what the API sends cannot drift apart. Models allow extra fields: a column added to a table shows up in
the API as it does in `--json`, and a client that does not know it ignores it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from contentq.errors import ContentqError
from contentq.lifecycle import STATES
from contentq.people.users import check_password
from contentq.publish.deliveries import STATES as DELIVERY_STATES
from contentq.settings import QUEUES
from contentq.store.audit import KINDS as AUDIT_KINDS
from contentq.store.jobs import STATUSES


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(BaseModel):
    """Every refused request (4xx) and every unavailable dependency (503): one sentence that says what is wrong
    and what to do."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(description="What is wrong and what to do next.", examples=["no job 'publish-9'"])


ERROR_TEXT = {
    400: "Bad request: a value the server cannot use (a filter, a time, a text).",
    401: "Not logged in: send `Authorization: Bearer <token>` (a user's token: `contentq users token NAME`).",
    403: "Forbidden: the user's role does not allow this (an editor: not on this post's route), or a browser"
    " session's CSRF token is missing or wrong; `error` says which.",
    404: "No such job, post or queue.",
    405: "Method not allowed here: the `Allow` header lists the methods this path takes.",
    409: "Conflict: the state of the job or post does not allow this now (or it is busy); `error` says why.",
    413: "Request body too large (CONTENTQ_WEB_MAX_BODY_KB) or job payload over 16 KiB.",
    422: "Malformed request: a parameter or body field out of its declared type, range or pattern.",
    503: "Redis or the database is unavailable; try again once it is back.",
}


ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def errors(*codes: int, json_route: bool = True) -> dict[int | str, dict[str, Any]]:
    """The `responses` of an operation: its error codes, each with the Error model as JSON (also on an operation
    whose success is text or an event stream: FastAPI would give its errors that media type)."""
    extra: dict[str, Any] = {"model": Error} if json_route else {}
    return {code: {**extra, "description": ERROR_TEXT[code], "content": ERROR_JSON} for code in codes}


DURATION = r"^([1-9][0-9]{0,3}(\.[0-9]{1,2})?[smhd]?|[1-9][0-9]{0,2}(\.[0-9]{1,2})?w)$"
"""A window as `clock.parse_duration` reads it (90s, 15m, 24h, 7d, 2w), within its 100-year limit."""

ID_MAX = 2**53 - 1
"""The largest id the API takes: exact in a JSON number everywhere (a double), and far beyond any row."""


def _whole(value: Any) -> Any:
    """JSON's 5.0 is the integer 5 (as JSON Schema counts it); anything else is left to the strict check."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Id = Annotated[int, Ge(1), Le(ID_MAX), BeforeValidator(_whole)]
"""A post id in a body."""


class Body(BaseModel):
    """A request body: types as declared (no `0` for false, no `false` for a number)."""

    model_config = ConfigDict(strict=True)


READ = (401, 403, 422, 503)
"""Every operation: not logged in, a role that may not, a malformed parameter, Redis or the database down."""
WRITE = (*READ, 413)
"""Every state-changing operation also: CSRF (a browser session), a body too large."""

# -- jobs -------------------------------------------------------------------------------------------------

Status = Literal[STATUSES]  # type: ignore[valid-type]
Queue = Literal[QUEUES]  # type: ignore[valid-type]
PostState: TypeAlias = Literal[tuple(STATES)]  # type: ignore[valid-type]
DeliveryState: TypeAlias = Literal[tuple(DELIVERY_STATES)]  # type: ignore[valid-type]


class Job(Out):
    id: str
    kind: str
    queue: str
    key: str
    status: str
    payload: Any = None
    result: Any = None
    post_id: int | None = None
    parent_id: str | None = None
    rq_id: str | None = None
    generation: int
    attempts: int
    max_attempts: int
    reschedules: int | None = None
    next_retry_at: str | None = None
    retry_reason: str | None = None
    error: str | None = None
    worker: str | None = None
    created_at: str
    enqueued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    updated_at: str


class JobPage(Out):
    items: list[Job]
    total: int = Field(description="How many jobs match the filters (all pages).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one.")


class JobEvent(Out):
    id: int
    job_id: str
    at: str
    level: str
    event: str
    message: str
    data: str | None = None


class JobDetail(Out):
    job: Job
    stopping_on: str | None = Field(
        description="A cancelled job whose run has not stopped yet: the worker it runs on (retry waits for it)."
    )
    events: list[JobEvent]
    parent: Job | None
    children: list[Job]


class CreatedJob(JobDetail):
    deduplicated: bool = Field(description="True when a queued or running job of the same key was returned.")


class BulkRequest(Body):
    queue: Queue | None = Field(None, description="Only this queue.")
    kind: str | None = Field(None, min_length=1, max_length=40, description="Only this job kind.")
    since: str | None = Field(None, pattern=DURATION, description="Only jobs created in this window (24h, 7d).")
    older_than: str | None = Field(None, pattern=DURATION, description="Only jobs created at least this long ago.")
    dry_run: bool = Field(False, description="Only count the jobs it would take (the confirmation's count).")


class BulkRetry(BulkRequest):
    status: Literal["failed", "cancelled"] = "failed"


class BulkCancel(BulkRequest):
    status: Literal["queued", "in_progress"] = "queued"


class Skipped(Out):
    id: str
    error: str


class BulkResult(Out):
    action: Literal["retry", "cancel"]
    matched: int = Field(description="Jobs that matched (at most 10,000 per request: see `more`).")
    done: int = Field(description="Jobs retried or cancelled (0 for a dry run).")
    ids: list[str]
    skipped: list[Skipped] = Field(description="Jobs that changed meanwhile, each with the reason.")
    more: bool = Field(description="More than 10,000 matched: send it again for the rest.")


# -- queues and workers ---------------------------------------------------------------------------------


class QueueStatus(Out):
    queue: str
    queued: int
    in_progress: int
    scheduled: int
    failed: int
    paused: bool
    workers: int
    oldest_queued_s: float | None
    redis: dict[str, int]


class QueueChange(Out):
    queue: str
    paused: bool
    changed: bool


class Worker(Out):
    name: str
    host: str
    pid: int
    queues: list[str]
    state: Literal["alive", "dead", "stopped"]
    current_job: str | None
    started_at: str
    heartbeat_at: str
    heartbeat_age_s: float
    stopped_at: str | None
    memory_kb: int | None = Field(description="Resident memory of the worker process (this host only).")
    jobs_succeeded: int = Field(description="Jobs it ran that succeeded since it started.")
    jobs_failed: int = Field(description="Jobs it ran that failed since it started.")


# -- posts and sources ------------------------------------------------------------------------------------


class PostSummary(Out):
    id: int
    route: str
    state: str
    state_reason: str | None = None
    kind: str
    title: str | None = None
    snippet: str | None = None
    scheduled_at: str | None = None
    published_at: str | None = None
    link: str | None = None
    updated_at: str


class PostPage(Out):
    items: list[PostSummary]
    total: int
    next_cursor: int | None


class Post(Out):
    id: int
    route: str
    state: str
    kind: str
    text_html: str
    rewrite_html: str | None = None
    state_reason: str | None = None
    scheduled_at: str | None = None
    published_at: str | None = None
    link: str | None = None
    updated_at: str


class Delivery(Out):
    """A post's delivery to one destination of its route (docs/destinations.md)."""

    id: int
    destination: str = Field(description="`platform:account`.", examples=["telegram:@my_channel", "x:main"])
    state: DeliveryState
    reason: str | None = Field(description="Why it is in its state: what it waits for, why it failed.")
    due_at: str | None = Field(description="Its slot: the post's, later while it waits for a limit.")
    published_at: str | None
    link: str | None = Field(description="The tweet, Instagram post or Telegram message (an http(s) link).")
    ids: list[int | str] = Field(description="What the platform returned: tweet ids, the media id, message ids.")
    notes: str | None = Field(description="How the post was adapted for it (a thread, images left out …).")


class DestinationVersion(Out):
    """What one destination is sent: X's tweets, Instagram's caption and images (docs/destinations.md)."""

    destination: str
    platform: Literal["telegram", "x", "instagram"]
    notes: list[str]
    tweets: list[dict[str, Any]] | None = Field(None, description="X: each tweet's text, weight and image files.")
    caption: str | None = Field(None, description="Instagram: the caption.")
    length: int | None = Field(None, description="Instagram: the caption's length in UTF-16 units.")
    images: list[str] | None = Field(None, description="Instagram: the image files, in order.")
    card: bool | None = Field(None, description="Instagram: an image card is made from the text (no images).")


class PostDetail(Out):
    post: Post
    media: list[dict[str, Any]]
    sends: list[dict[str, Any]]
    jobs: list[Job]
    original_length: int
    rewrite_length: int
    preview_html: str = Field(description="The Telegram preview (the publisher's own render), as HTML.")
    preview_notes: list[str]
    deliveries: list[Delivery] = Field(description="One per destination of a route with `destinations`, else [].")
    destinations: list[DestinationVersion] = Field(description="Each destination's version of the post.")
    destinations_html: str = Field(description="The destinations' versions, as HTML.")
    actions: list[dict[str, Any]] = Field(
        description="What people did to it besides its moves (a text edited): at, actor, action, detail."
    )


class Approved(Out):
    id: int
    state: str
    scheduled_at: str


class Scheduled(Approved):
    note: str | None


class Edited(Out):
    id: int
    message: str


class PublishQueued(Out):
    id: int
    job: str


class Listener(Out):
    name: str
    state: str
    status: str = Field(description="ok, warn or fail, as `contentq health` says.")
    detail: str
    heartbeat_at: str


class LearnedFooter(Out):
    lines: list[str]
    sample: int
    learned_at: str


class Source(Out):
    source: str
    route: str | None
    id: int | None
    title: str | None
    last_message_id: int = Field(description="The collect cursor: the last message id taken.")
    last_run: str | None = Field(description="When its last collect ended well.")
    collected: int
    duplicates: int
    filtered: int
    error: str | None = Field(description="The error of its last collect, if it failed.")
    listener: Listener | None = Field(description="The `contentq listen` process following it, if any.")
    footer: LearnedFooter | None = Field(description="The donor footer learned from its posts, if any.")


# -- the rest ---------------------------------------------------------------------------------------------


class ScheduleView(Out):
    posts: list[dict[str, Any]]
    routes: list[dict[str, Any]]


class Usage(Out):
    days: list[dict[str, Any]]
    total: dict[str, Any]


class Stats(Out):
    since: str | None
    generated_at: str
    jobs: Any
    posts: Any
    llm: Any


class DestinationLimit(Out):
    """An X or Instagram account's token bucket (docs/destinations.md): sends free now and the next free time."""

    destination: str = Field(examples=["x:main"])
    tokens: float | None = Field(description="Sends the bucket holds now (None: the account has no table).")
    burst: int | None
    per_hour: float | None
    next_free: str | None = Field(description="`now`, or when the next send is free (UTC).")
    waiting: int = Field(description="Its deliveries waiting (`scheduled`).")
    next_due: str | None = Field(description="The earliest slot among them.")


class Dashboard(Out):
    queues: list[QueueStatus]
    llm_breaker: dict[str, Any]
    alerts: list[dict[str, Any]]
    hours: list[dict[str, Any]]
    destination_limits: list[DestinationLimit]


# -- insights (docs/insights.md) ----------------------------------------------------------------------

Views24 = Annotated[float | None, Field(description="Median views at 24 h after publication (None: no post measured).")]
Ratio = Annotated[float | None, Field(description="This figure over its route and destination's median.")]


class SubscriberSample(Out):
    at: str = Field(description="When the count was read (ISO, UTC).")
    subscribers: int = Field(ge=0)


class InsightsTarget(Out):
    """One route's destination: its posts, medians at 24 h and subscribers over time."""

    route: str
    destination: str = Field(examples=["telegram:@my_channel"])
    posts: int = Field(ge=0, description="Posts published in the window.")
    measured: int = Field(ge=0, description="Of them, posts with figures at 24 h (the medians rest on these).")
    median_views_24h: Views24
    forwards_per_view: float | None = Field(description="Forwards at 24 h over views at 24 h, all measured posts.")
    reactions_per_view: float | None = Field(description="Reactions at 24 h over views at 24 h.")
    subscribers: list[SubscriberSample] = Field(description="Subscriber counts in the window, oldest first.")
    subscribers_change: int | None = Field(description="Last count minus the first (None: fewer than two).")


class InsightsDonor(Out):
    route: str
    destination: str
    source: str = Field(description="The donor channel; '(generated)' for posts of a generate rule.")
    posts: int = Field(ge=0, description="Its posts with figures at 24 h.")
    median_views_24h: Views24
    route_median: Views24
    ratio: Ratio
    suggestion: Literal["keep", "watch", "drop", "too few posts"]
    reason: str = Field(description="The numbers behind the suggestion, in a sentence.")


class InsightsSlot(Out):
    route: str
    destination: str
    slot: int = Field(ge=0, le=167, description="Hour of the week in the route's time zone: 0 is Monday 00:00.")
    label: str = Field(examples=["Wed 13:00"])
    posts: int = Field(ge=0)
    median_views_24h: Views24
    ratio: Ratio


class InsightsSlotAdvice(Out):
    """A slot that does at least 1.3× as well as another, both with enough posts."""

    route: str
    destination: str
    better: str = Field(examples=["Wed 13:00"])
    worse: str = Field(examples=["Mon 09:00"])
    ratio: float = Field(description="The better slot's median views at 24 h over the worse one's.")
    better_posts: int = Field(ge=0)
    worse_posts: int = Field(ge=0)
    better_median: float
    worse_median: float
    text: str


class InsightsRewrite(Out):
    route: str = Field(description="A route, or '(all routes)' for the totals of one rewriter.")
    rewriter: str = Field(examples=["llm", "clean", "none"])
    posts: int = Field(ge=0)
    measured: int = Field(ge=0)
    llm_cost: float = Field(ge=0, description="Estimated LLM cost of these posts, in dollars.")
    cost_per_post: float | None
    cost_per_1000_views: float | None = Field(description="LLM cost per 1,000 views at 24 h.")
    median_views_24h: Views24


class InsightsPost(Out):
    post_id: int
    route: str
    destination: str
    source: str
    slot: str
    published_at: str
    views_24h: float
    ratio: Ratio
    link: str | None


class Insights(Out):
    """`contentq insights --json`: what published posts achieved and what to change."""

    since: str = Field(description="Posts published from this time (ISO, UTC) …")
    until: str = Field(description="… to this one.")
    min_posts: int = Field(ge=1, description="The fewest posts a suggestion rests on.")
    posts: int = Field(ge=0)
    measured: int = Field(ge=0, description="Posts with figures at 24 h.")
    targets: list[InsightsTarget]
    donors: list[InsightsDonor]
    slots: list[InsightsSlot]
    better_slots: list[InsightsSlotAdvice]
    rewrites: list[InsightsRewrite] = Field(description="Per route and rewriter.")
    rewriters: list[InsightsRewrite] = Field(description="Per rewriter over all routes: clean and LLM side by side.")
    best: list[InsightsPost] = Field(description="The week's best posts against their target's median.")
    worst: list[InsightsPost]
    findings: list[str] = Field(description="The answers in sentences, with the figures and post counts.")


# -- people -------------------------------------------------------------------------------------------------


class Me(Out):
    """Who the request is, and what their role allows."""

    name: str = Field(examples=["alice"])
    role: Literal["owner", "editor", "viewer"]
    routes: list[str] = Field(description="An editor's routes: the posts they may act on.")
    via: Literal["password", "token", "shared"] = Field(
        description="A browser session (password), a user's API token, or the panel's shared token (before any"
        " owner user exists)."
    )
    permissions: list[str] = Field(description="What the role allows: read, posts, jobs, queues, usage, admin.")


AuditKind: TypeAlias = Literal[AUDIT_KINDS]  # type: ignore[valid-type]


class AuditEntry(Out):
    id: str = Field(description="Where it is recorded: p… a post's move, j… a job's event, a… anything else.")
    at: str
    actor: str = Field(examples=["web:alice"], description="web:<user>, cli:<os user>, bot:<telegram id>.")
    kind: AuditKind
    target: str | None = Field(description="The post id, job id, queue, user or session it was about.")
    action: str = Field(examples=["approved"])
    detail: str | None


class AuditPage(Out):
    items: list[AuditEntry]
    next_before: str | None = Field(description="Pass as `before` for older rows; null on the last page.")


class WebSession(Out):
    id: str = Field(description="The first characters of the session's key (never its cookie).")
    user: str
    address: str | None
    agent: str | None
    created_at: str
    seen_at: str


class SessionEnded(Out):
    id: str
    user: str


# -- users (the owner's Users page and /api/users) -----------------------------------------------------------

Role: TypeAlias = Literal["owner", "editor", "viewer"]
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
"""A user's name as `contentq users add` takes it (contentq.people.users.NAME)."""
RouteName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]
TOKEN_LABEL = r"^[^\x00-\x1f\x7f]*$"


def _password(value: str) -> str:
    """The CLI's rules (contentq.people.users.check_password), with its sentence as the 422's."""
    try:
        return check_password(value)
    except ContentqError as exc:
        raise PydanticCustomError("password", str(exc)) from None


Password = Annotated[
    Annotated[str, Field(max_length=1024, json_schema_extra={"minLength": 10}), AfterValidator(_password)] | None,
    Field(description="At least 10 characters."),
]


class ApiToken(Out):
    id: int = Field(description="What revoking it takes.")
    label: str | None = Field(description="What it is for (given when it was made); null for older tokens.")
    hint: str = Field(description="Its last four characters (the token itself is never kept).")
    created_at: str
    last_used_at: str | None


class User(Out):
    name: str = Field(examples=["eddie"])
    role: Role
    routes: list[str] = Field(description="An editor's routes: the posts they may act on.")
    created_at: str
    updated_at: str
    last_login: str | None = Field(description="Their last login with a password (the audit's).")
    last_seen: str | None = Field(description="The last use of one of their live sessions.")
    sessions: list[WebSession] = Field(description="Their live panel logins.")
    tokens: list[ApiToken] = Field(description="Their live API tokens.")


class NewUser(Body):
    name: str = Field(pattern=USER_NAME, max_length=40, description="What they log in with.")
    role: Role
    routes: list[RouteName] = Field(
        default_factory=list, max_length=100, description="An editor's routes (routes of contentq.toml)."
    )
    password: Password = None
    password_again: str | None = Field(None, max_length=1024, description="The same password again.")
    generate: bool = Field(False, description="Make a password instead (answered once, as generated_password).")


class UserCreated(User):
    generated_password: str | None = Field(description="The generated password, shown this once; else null.")


class UserChange(Body):
    role: Role | None = Field(None, description="The new role (the last owner keeps theirs).")
    routes: list[RouteName] | None = Field(
        None, max_length=100, description="An editor's routes; left as they are when omitted."
    )


class NewPassword(Body):
    password: Password = None
    password_again: str | None = Field(None, max_length=1024, description="The same password again.")
    generate: bool = Field(False, description="Make a password instead (answered once, as generated_password).")


class PasswordSet(Out):
    name: str
    sessions_ended: int = Field(description="Their panel sessions, ended by the new password.")
    generated_password: str | None = Field(description="The generated password, shown this once; else null.")


class UserRemoved(Out):
    name: str
    role: Role


class NewToken(Body):
    label: str | None = Field(None, max_length=60, pattern=TOKEN_LABEL, description="What it is for: ci, a phone.")


class TokenIssued(ApiToken):
    user: str
    token: str = Field(description="The token: send it as `Authorization: Bearer …`. Shown this once.")


class TokenRevoked(Out):
    user: str
    id: int


class SessionsEnded(Out):
    user: str
    ended: int = Field(description="How many of the user's sessions ended.")
