"""`contentq images`: generate, list, show, delete, prune."""

from __future__ import annotations

from typing import Annotated

import typer

from contentq.cli import typer_app
from contentq.cli.common import LIMIT_MAX, SQLITE_INT_MAX, ImageIdArg, JsonOpt, PostIdArg, WideOpt, runtime
from contentq.cli.render import Col, console, details, ok, print_json, table
from contentq.images.service import BACKENDS, request_image
from contentq.images.store import DEFAULT_PRUNE_AGE, delete_image, get_image, list_images, prune_images
from contentq.media import human_bytes

app = typer_app(
    help="Images of posts: generate (OpenAI or a local card), list, show, delete, prune.",
    no_args_is_help=True,
)


@app.command()
def generate(
    post_id: PostIdArg,
    prompt: Annotated[
        str | None,
        typer.Option(
            help="Image prompt (openai) or the words on the card; default: the rewrite's image prompt, "
            "or for a card the post's title / first sentence."
        ),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help=f"One of: {', '.join(BACKENDS)}; default: the route's image_backend.")
    ] = None,
) -> None:
    """Queue image generation for a post (queue imagegen); the image replaces an earlier generated one."""
    row = request_image(runtime(), post_id, prompt=prompt, backend=backend)
    plan = row["plan"]
    if row.get("deduplicated"):
        console.print(
            f"[yellow]an image job for post {post_id} is already {row['status']}: {row['id']}[/yellow]"
            + ("; your --prompt/--backend were not applied (cancel it with `contentq jobs cancel "
               f"{row['id']}` first)" if prompt or backend else "")
        )  # fmt: skip
        return
    ok(f"image for post {post_id} queued as job {row['id']} ({plan['backend']}, text from {plan['text_source']})")
    console.print(f"[dim]follow it with `contentq jobs logs {row['id']}`; it needs a worker on queue imagegen[/dim]")


@app.command("list")
def list_(
    unattached: Annotated[bool, typer.Option("--unattached", help="Only images no post uses.")] = False,
    post: Annotated[
        int | None, typer.Option("--post", help="Only the images of this post.", min=1, max=SQLITE_INT_MAX)
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=LIMIT_MAX)] = 100,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List generated images, newest first (--wide adds the dimensions)."""
    rows = list_images(runtime().store, unattached=unattached, post_id=post, limit=limit)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["dimensions"] = f"{r['width']}x{r['height']}" if r["width"] else None
        r["file"] = human_bytes(r["size"])
        r["post"] = f"{r['post_id']} ({r['post_state']})" if r["post_id"] is not None else "unattached"
        r["text"] = r["prompt"] or ""
    table(rows, ["id", "post", "backend", Col("dimensions", wide=True), ("file", "size"), ("created_at", "created"),
                 Col("text", fit="ellipsis")], title="images",
          empty="no generated images" + (" unattached" if unattached else ""), wide=wide)  # fmt: skip


@app.command()
def show(image_id: ImageIdArg, as_json: JsonOpt = False) -> None:
    """Show one generated image: its post, backend, prompt and file."""
    rt = runtime()
    row = get_image(rt.store, image_id)
    path = rt.settings.media_dir / row["path"] if row["path"] else None
    row["file"] = str(path) if path else None
    row["file_exists"] = bool(path and path.exists())
    if as_json:
        print_json(row)
        return
    row["size"] = human_bytes(row["size"])
    details(row, title=f"image {image_id}")


@app.command()
def delete(
    image_id: ImageIdArg,
    detach: Annotated[bool, typer.Option("--detach", help="Also when attached: remove it from its post.")] = False,
) -> None:
    """Delete a generated image and its file (refused while attached to a post, unless --detach)."""
    row = delete_image(runtime(), image_id, detach=detach)
    where = f", removed from post {row['post_id']}" if row["post_id"] is not None else ""
    ok(f"image {image_id} deleted{where}" + ("" if row["file_removed"] else " (its file is shared or was gone)"))


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only what is older than this (e.g. 7d, 24h).")
    ] = DEFAULT_PRUNE_AGE,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete unattached generated images older than --older-than, and media files no row refers to."""
    summary = prune_images(runtime(), older_than, dry_run)
    if as_json:
        print_json(summary)
        return
    verb = "would delete" if dry_run else "deleted"
    ok(
        f"{verb} {summary['deleted']} unattached image(s) and {len(summary['orphan_files'])} unreferenced "
        f"file(s): {summary['files']} file(s), {human_bytes(summary['bytes'])} (older than {older_than})"
    )
    if summary["images"]:
        console.print(f"[dim]images: {', '.join(str(i) for i in summary['images'])}[/dim]")
