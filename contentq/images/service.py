"""Making a post's image: which backend, which prompt, generate, store, attach. The imagegen job calls this."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from contentq.errors import ConfigError, ContentqError
from contentq.images.card import CardRenderer, card_text_for_post, shorten
from contentq.images.store import POST_LOCKED_STATES, save_generated
from contentq.integrations.image_generator import ImageFatalError, ImageGenerator
from contentq.rewrite import budget
from contentq.rewrite.usage import record_image_usage
from contentq.routes import Route, load_routes
from contentq.runtime.config import routes_config
from contentq.runtime.context import Runtime
from contentq.runtime.tracking import enqueue
from contentq.store.posts import get_post

BACKENDS = ("openai", "card")

PAID_BACKENDS = frozenset({"openai"})
"""Backends that call a paid image API: their images pass the route's budget and are counted in `usage`."""

CLOSED_POST_STATES = ("published", "publishing", "cancelled", "rejected", "duplicate", "filtered")
"""No image is made for a post in these states: it is sent already, or will never be."""

LOG_PROMPT_CHARS = 1000


class EventLog(Protocol):
    def log(self, event: str, message: str = "", *, level: str = "info", **data: Any) -> None: ...


def _openai_generator(runtime: Runtime) -> ImageGenerator:
    from contentq.integrations.images_openai import OpenAIImageGenerator

    return OpenAIImageGenerator(runtime.settings)


def _card_generator(runtime: Runtime) -> ImageGenerator:
    return CardRenderer.from_settings(runtime.settings)


FACTORIES = {"openai": _openai_generator, "card": _card_generator}


def image_generator(runtime: Runtime, backend: str) -> ImageGenerator:
    """The process's generator for `backend` (runtime.services["images.<backend>"]; tests put fakes there)."""
    if backend not in FACTORIES:
        raise ConfigError(f"unknown image backend {backend!r}: use one of {', '.join(BACKENDS)}")
    generator: ImageGenerator = runtime.service(f"images.{backend}", FACTORIES[backend])
    return generator


def route_backend(runtime: Runtime, route_name: str) -> str | None:
    """The route's image_backend, or None when the route is not in contentq.toml."""
    routes = load_routes(runtime.settings.config_path)
    route = routes.routes.get(route_name)
    return route.image_backend if route is not None else None


@dataclass
class ImagePlan:
    post_id: int
    backend: str
    text: str  # the prompt for the image API, or the words on the card
    text_source: str  # payload | image_prompt | title | first sentence


def plan_image(
    runtime: Runtime, post: dict[str, Any], *, prompt: str | None = None, backend: str | None = None
) -> ImagePlan:
    """Decide the backend (given > route's image_backend > card) and the text (see "Images" in docs/pipeline.md)."""
    chosen = backend or route_backend(runtime, post["route"]) or "card"
    if chosen not in BACKENDS:
        raise ConfigError(f"unknown image backend {chosen!r}: use one of {', '.join(BACKENDS)}")
    hint = f"`contentq images generate {post['id']} --prompt TEXT`"
    if prompt and prompt.strip():
        return ImagePlan(post["id"], chosen, prompt.strip(), "payload")
    if chosen == "openai":
        if post.get("image_prompt"):
            return ImagePlan(post["id"], chosen, str(post["image_prompt"]).strip(), "image_prompt")
        raise ImageFatalError(
            f"post {post['id']} has no image prompt (the rewrite wrote none); give one with {hint}, "
            "or use --backend card"
        )
    text = card_text_for_post(post)
    if text:
        return ImagePlan(post["id"], chosen, text, "title" if post.get("title") else "first sentence")
    if post.get("image_prompt"):
        return ImagePlan(post["id"], chosen, shorten(str(post["image_prompt"])), "image_prompt")
    raise ImageFatalError(f"post {post['id']} has no title or text to put on a card; give the words with {hint}")


def check_post_open(post: dict[str, Any]) -> None:
    if post["state"] in CLOSED_POST_STATES:
        raise ImageFatalError(
            f"post {post['id']} is {post['state']}; no image is made for it"
            + (" (its image cannot change any more)" if post["state"] in POST_LOCKED_STATES else "")
        )


def generate_post_image(
    runtime: Runtime,
    post_id: int,
    *,
    prompt: str | None = None,
    backend: str | None = None,
    log: EventLog | None = None,
) -> dict[str, Any]:
    """Generate an image for a post and attach it (replacing an earlier generated one); returns a summary."""
    post = get_post(runtime.store, post_id)
    check_post_open(post)
    plan = plan_image(runtime, post, prompt=prompt, backend=backend)
    route = _route(runtime, post["route"])
    if plan.backend in PAID_BACKENDS:
        verdict = budget.check(runtime, route, "image")
        if verdict.action == "clean":  # the budget is spent: a card costs nothing
            if log is not None:
                log.log("budget_card", f"{verdict.reason}: a card instead of an image from the API", level="warning")
            plan = plan_image(runtime, post, backend="card")
        elif not verdict.allowed:
            verdict.enforce()  # BudgetExceeded: the imagegen job waits for the next period
    generator = image_generator(runtime, plan.backend)
    if log is not None:
        log.log(
            "image_request",
            f"{plan.backend}: {plan.text[:120]}",
            backend=plan.backend,
            text_source=plan.text_source,
            prompt=plan.text[:LOG_PROMPT_CHARS],
            model=runtime.settings.image_model if plan.backend == "openai" else None,
        )
    image = generator.generate(plan.text)
    if plan.backend in PAID_BACKENDS:
        record_image_usage(
            runtime.store, runtime.settings, post_id=post_id, route=post["route"], job_id=getattr(log, "job_id", None),
            model=image.model or runtime.settings.image_model, size=image.details.get("size"),
            quality=image.details.get("quality"),
        )  # fmt: skip
        budget.check(runtime, route, "image")  # the admin hears at once of a budget this image spent
    saved = save_generated(runtime, post_id, image, plan.text)
    result = {
        "image_id": saved.image_id,
        "post_id": post_id,
        "attached": saved.attached,
        "backend": image.backend,
        "model": image.model,
        "mime": image.mime,
        "width": image.width,
        "height": image.height,
        "bytes": len(image.data),
        "path": saved.relpath,
        "replaced": [r["id"] for r in saved.replaced],
        "text_source": plan.text_source,
    }
    if log is not None:
        for old in saved.replaced:
            log.log("image_deleted", f"image {old['id']} replaced by image {saved.image_id}", image_id=old["id"])
        if saved.attached:
            log.log(
                "image_attached",
                f"image {saved.image_id} ({image.width}x{image.height} {image.mime}, {len(image.data)} bytes) "
                f"attached to post {post_id}",
                result={k: v for k, v in result.items() if k != "replaced"},
                details=image.details or None,
                revised_prompt=image.revised_prompt,
            )
        else:
            log.log(
                "image_unattached",
                f"image {saved.image_id} stored but not attached: post {post_id} went to publishing meanwhile",
                level="warning",
            )
    return result


def _route(runtime: Runtime, name: str | None) -> Route | None:
    """The post's route as configured now (None: gone from contentq.toml, or no routes file)."""
    path = runtime.settings.config_path
    if not name or not path.exists():
        return None
    return routes_config(runtime).routes.get(name)


def request_image(
    runtime: Runtime, post_id: int, *, prompt: str | None = None, backend: str | None = None
) -> dict[str, Any]:
    """Check the post and the backend, then enqueue the imagegen job (deduplicated while one is active)."""
    post = get_post(runtime.store, post_id)
    check_post_open(post)
    plan = plan_image(runtime, post, prompt=prompt, backend=backend)
    image_generator(runtime, plan.backend)  # a missing API key or a bad card font fails here, not in the worker
    payload: dict[str, Any] = {"post_id": post_id, "backend": plan.backend}
    if prompt:
        payload["prompt"] = prompt
    row = enqueue(runtime, "imagegen", str(post_id), payload, post_id=post_id)
    return {**row, "plan": asdict(plan)}


def describe_failure(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ContentqError) else f"{type(exc).__name__}: {exc}"
