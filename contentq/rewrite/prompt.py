"""The messages sent to the model: route prompt, the target channel's description and style, the donor post.

Laid out for the provider's prompt cache, which serves an exact prefix of an earlier request at a lower price:
what is the same for every post of a route comes first, byte for byte (the instructions and the route's rules in
the system message, then the channel's recent posts as style examples), and what belongs to one post comes last,
in one message (its length rule, which depends on its media, and its text). Nothing in the fixed part names the
post, the time or the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contentq.routes import Route

TAGS_HELP = (
    '<b>, <i>, <u>, <s>, <span class="tg-spoiler">, <a href="…">, <code>, <pre>, <blockquote>, <blockquote expandable>'
)


@dataclass
class PromptInput:
    route: Route
    donor_html: str
    limit: int
    has_media: bool
    style_examples: list[str] = field(default_factory=list)


def length_rule(data: PromptInput) -> str:
    """Under `truncate` the text must fit (it is cut otherwise); under `split` a long text is sent in parts."""
    if data.route.long_text == "truncate":
        return f"The text must be at most {data.limit} characters" + (
            " (it is the caption of an image or video)." if data.has_media else "."
        )
    if data.has_media:
        return (
            f"Keep the content of the original post; do not shorten it to fit. Up to {data.limit} characters it"
            " is the caption of the image or video, a longer text is sent as a message of its own."
        )
    return "Keep the content of the original post; do not shorten it to fit: a long text is sent as several messages."


def system_prompt(data: PromptInput) -> str:
    route = data.route
    allowed = ", ".join(route.allowed_links)
    lines = [
        f"You rewrite posts from other Telegram channels for the Telegram channel {route.target}.",
    ]
    if route.description:
        lines.append(f"About the channel: {route.description}")
    lines += [
        "",
        f"Task: {route.prompt}",
        "",
        "Rules:",
        f"- Write the post in Telegram HTML. Use only these tags: {TAGS_HELP}. No <br>, <p> or other tags:"
        " use plain line breaks. Write <, > and & in text as &lt;, &gt; and &amp;.",
        "- Keep the formatting that matters (bold key facts, links of the original post). Keep custom emoji"
        ' (<tg-emoji emoji-id="…">😀</tg-emoji>) exactly as they are, id and emoji inside.',
        "- Links: only those of the original post"
        + (f" and these: {allowed}" if allowed else "")
        + ". Add no other links.",
        "- Do not name the source channel, do not ask readers to subscribe to it, drop its signature and ads.",
        "- Length: follow the length rule given with the post.",
        "- If the post is an advertisement or does not fit the channel, set skip to true, give skip_reason,"
        " and leave text empty.",
        "- title: a short headline, or null. image_prompt: one sentence describing an illustration for the post"
        " (no text in the picture), or null.",
        "- Answer with one JSON object following the given schema, nothing else.",
    ]
    return "\n".join(lines)


def examples_message(examples: list[str]) -> str:
    parts = ["Recent posts of the channel, to match their style and length (do not copy them):"]
    for number, example in enumerate(examples, 1):
        parts.append(f"--- example {number} ---\n{example}")
    return "\n\n".join(parts)


def fixed_messages(data: PromptInput, *, with_examples: bool = True) -> list[dict[str, Any]]:
    """The part of the prompt every post of the route shares (the prompt cache's prefix): instructions and
    rules, then the style examples."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt(data)}]
    if with_examples and data.style_examples:
        messages.append({"role": "user", "content": examples_message(data.style_examples)})
    return messages


def post_message(data: PromptInput) -> dict[str, Any]:
    """The part that belongs to this post, last: its length rule and its text."""
    return {
        "role": "user",
        "content": f"Length rule: {length_rule(data)}\n\nThe post to rewrite (Telegram HTML):\n\n{data.donor_html}",
    }


def build_messages(data: PromptInput, *, with_examples: bool = True) -> list[dict[str, Any]]:
    return [*fixed_messages(data, with_examples=with_examples), post_message(data)]


def cache_key(route: Route) -> str:
    """The `prompt_cache_key` of a route's requests: the route, which names the shared prefix."""
    return f"contentq:{route.name}"


EXCERPT_CHARS = 500
"""The most of an invalid answer (and of the problem found in it) sent back to the model: a huge answer
echoed whole would make the retry overflow the context window."""


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} more characters not shown]"


def answer_echo(content: str | None) -> dict[str, Any]:
    """The model's invalid answer as the assistant turn before the correction: a bounded excerpt."""
    return {"role": "assistant", "content": excerpt(content or "")}


def correction_message(problem: str, hint: str = "") -> dict[str, Any]:
    """Sent after an invalid answer, so the next attempt knows what to fix."""
    problem = excerpt(problem)
    advice = f" {hint}" if hint else ""
    return {
        "role": "user",
        "content": f"Your answer was not usable: {problem}.{advice} Answer again with only the JSON object, "
        "following the schema exactly.",
    }
