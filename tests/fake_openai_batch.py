"""A fake OpenAI Files + Batches API (and chat completions) over real HTTP, its state in a SQLite file
(see tests/fake_http.py), for the real OpenAI SDK.

Implemented as OpenAI documents them:
- `Authorization: Bearer <key>` on every request; a wrong key gets 401 `invalid_api_key`.
- `POST /v1/files` (multipart: `file`, `purpose`): a file object (`file-…`, status `processed`); `purpose` must
  be one of OpenAI's; `GET /v1/files/{id}/content` gives the bytes back (404 for an unknown file).
- `POST /v1/batches` (`input_file_id`, `endpoint`, `completion_window`, `metadata`): a batch object in
  `validating`; `completion_window` must be `24h`, the endpoint a batch endpoint, the file one of purpose `batch`.
  `GET /v1/batches/{id}` moves it one step each time it is read: validating → in_progress (or `failed` with
  `errors.data` when a line is invalid: `invalid_json_line`, `missing_required_parameter`, `duplicate_custom_id`,
  `invalid_method`, `invalid_url`, `mismatched_model`, each with its line number) → finalizing (the lines run
  now) → completed, with an `output_file_id` (lines that answered 200) and an `error_file_id` (lines that did
  not). `POST /v1/batches/{id}/cancel`: cancelling, then cancelled (lines that did not run get
  `batch_cancelled`). `GET /v1/batches` lists them, newest first.
- `POST /v1/chat/completions`: a direct call, run like a batch line.

A line runs against `answer(body) -> (status, body)` when the test gives one, else against llmock
(`llm_base_url`). Fates scripted per batch (`fate`): `complete` (default), `expire` (the first `run_before_expiry`
lines answer, the rest get `batch_expired`, status `expired`), `fail` (`failed` with an error), `stall` (stays
in_progress until cancelled). `calls(endpoint)` counts requests: `files`, `file_content`, `batches`,
`batch`, `batch_cancel`, `batch_list`, `chat`.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fake_http import FakePlatform, Reply, Request

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, purpose TEXT NOT NULL, filename TEXT NOT NULL, content BLOB NOT NULL, created_at INTEGER
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, input_file_id TEXT NOT NULL, endpoint TEXT NOT NULL, completion_window TEXT NOT NULL,
    status TEXT NOT NULL, fate TEXT NOT NULL, metadata TEXT, errors TEXT, output_file_id TEXT, error_file_id TEXT,
    total INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL, times TEXT NOT NULL DEFAULT '{}'
);
"""

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations")
API_KEY = "sk-test-secret-0123456789abcdef"

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def error_body(message: str, *, code: str | None = None, param: str | None = None,
               kind: str = "invalid_request_error") -> dict[str, Any]:  # fmt: skip
    """OpenAI's error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def chat_completion(
    content: str, *, model: str = "gpt-4o-mini", tokens_in: int = 120, tokens_out: int = 40
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + secrets.token_hex(8),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out},
    }  # fmt: skip


class FakeOpenAIBatch(FakePlatform):
    SCHEMA = SCHEMA

    def __init__(self, path: Path, *, api_key: str = API_KEY, llm_base_url: str | None = None,
                 answer: Answer | None = None) -> None:  # fmt: skip
        super().__init__(path)
        self.api_key = api_key
        self.llm_base_url = llm_base_url
        self.answer = answer
        self.fate = "complete"
        """What the next batch created does: complete, expire, fail, stall."""
        self.run_before_expiry = 0

    @property
    def base_url(self) -> str:  # what CONTENTQ_OPENAI_BASE_URL is set to
        return super().base_url + "/v1"

    # Requests ----------------------------------------------------------------------------------------------

    def endpoint(self, request: Request) -> str:
        path = request.path.rstrip("/")
        if path == "/v1/files":
            return "files"
        if path.startswith("/v1/files/") and path.endswith("/content"):
            return "file_content"
        if path == "/v1/batches":
            return "batches" if request.method == "POST" else "batch_list"
        if path.startswith("/v1/batches/") and path.endswith("/cancel"):
            return "batch_cancel"
        if path.startswith("/v1/batches/"):
            return "batch"
        if path == "/v1/chat/completions":
            return "chat"
        return path

    def route(self, request: Request, conn: sqlite3.Connection) -> tuple[int, Any, dict[str, str]]:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise Reply(401, error_body("Incorrect API key provided.", code="invalid_api_key"))
        endpoint = self.endpoint(request)
        handler = {
            "files": self._upload,
            "file_content": self._content,
            "batches": self._create,
            "batch_list": self._list,
            "batch": self._retrieve,
            "batch_cancel": self._cancel,
            "chat": self._chat,
        }.get(endpoint)
        if handler is None:
            raise Reply(404, error_body(f"Invalid URL ({request.method} {request.path})"))
        return 200, handler(request, conn), {}

    def _upload(self, request: Request, conn: sqlite3.Connection) -> dict[str, Any]:
        purpose = request.form.get("purpose")
        if "file" not in request.files:
            raise Reply(400, error_body("Missing required parameter: 'file'.", code="missing_required_parameter",
                                        param="file"))  # fmt: skip
        if purpose not in PURPOSES:
            raise Reply(400, error_body(f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose"))
        file_id = "file-" + secrets.token_hex(12)
        conn.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                     (file_id, purpose, "upload.jsonl", request.files["file"], int(time.time())))  # fmt: skip
        return self._file(conn, file_id)

    def _file(self, conn: sqlite3.Connection, file_id: str) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return {"id": row["id"], "object": "file", "bytes": len(row["content"]), "created_at": row["created_at"],
                "filename": row["filename"], "purpose": row["purpose"], "status": "processed",
                "status_details": None}  # fmt: skip

    def _content(self, request: Request, conn: sqlite3.Connection) -> bytes:
        file_id = request.path.split("/")[3]
        row = conn.execute("SELECT content FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None:
            raise Reply(404, error_body(f"No such File object: {file_id}", param="id"))
        return bytes(row["content"])

    def _create(self, request: Request, conn: sqlite3.Connection) -> dict[str, Any]:
        body = request.json or {}
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(name):
                raise Reply(400, error_body(f"Missing required parameter: '{name}'.",
                                            code="missing_required_parameter", param=name))  # fmt: skip
        if body["completion_window"] != "24h":
            raise Reply(400, error_body(f"Invalid completion_window: '{body['completion_window']}'. Supported "
                                        "values are: '24h'.", param="completion_window"))  # fmt: skip
        if body["endpoint"] not in ENDPOINTS:
            raise Reply(400, error_body(f"Invalid endpoint: '{body['endpoint']}'.", param="endpoint"))
        file = conn.execute("SELECT purpose FROM files WHERE id = ?", (body["input_file_id"],)).fetchone()
        if file is None:
            raise Reply(404, error_body(f"No such File object: {body['input_file_id']}", param="input_file_id"))
        if file["purpose"] != "batch":
            raise Reply(400, error_body("The input file must have purpose 'batch'.", param="input_file_id"))
        batch_id = "batch_" + secrets.token_hex(12)
        now = int(time.time())
        conn.execute(
            "INSERT INTO batches (id, input_file_id, endpoint, completion_window, status, fate, metadata, created_at,"
            " times) VALUES (?, ?, ?, ?, 'validating', ?, ?, ?, ?)",
            (batch_id, body["input_file_id"], body["endpoint"], "24h", self.fate,
             json.dumps(body.get("metadata")), now, json.dumps({"expires_at": now + 86400})),
        )  # fmt: skip
        return self._batch(conn, batch_id)

    def _batch(self, conn: sqlite3.Connection, batch_id: str) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise Reply(404, error_body(f"No batch found with id '{batch_id}'.", param="batch_id"))
        times = json.loads(row["times"])
        out = {
            "id": row["id"], "object": "batch", "endpoint": row["endpoint"], "input_file_id": row["input_file_id"],
            "completion_window": row["completion_window"], "status": row["status"],
            "output_file_id": row["output_file_id"], "error_file_id": row["error_file_id"],
            "errors": {"object": "list", "data": json.loads(row["errors"])} if row["errors"] else None,
            "created_at": row["created_at"], "metadata": json.loads(row["metadata"] or "null"),
            "request_counts": {"total": row["total"], "completed": row["completed"], "failed": row["failed"]},
        }  # fmt: skip
        for name in ("in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
                     "cancelling_at", "cancelled_at"):  # fmt: skip
            out[name] = times.get(name)
        return out

    def _list(self, request: Request, conn: sqlite3.Connection) -> dict[str, Any]:
        limit = int(request.query.get("limit") or 20)
        rows = conn.execute("SELECT id FROM batches ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
        data = [self._batch(conn, r["id"]) for r in rows.fetchall()]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": False}  # fmt: skip

    def _cancel(self, request: Request, conn: sqlite3.Connection) -> dict[str, Any]:
        batch_id = request.path.split("/")[3]
        row = self._batch(conn, batch_id)
        if row["status"] in ("completed", "failed", "expired", "cancelled"):
            raise Reply(409, error_body(f"Cannot cancel a batch with status '{row['status']}'."))
        self._set(conn, batch_id, "cancelling")
        return self._batch(conn, batch_id)

    def _set(self, conn: sqlite3.Connection, batch_id: str, status: str, **columns: Any) -> None:
        row = conn.execute("SELECT times FROM batches WHERE id = ?", (batch_id,)).fetchone()
        times = json.loads(row["times"])
        times[f"{status}_at"] = int(time.time())
        sets = "".join(f", {name} = ?" for name in columns)
        conn.execute(f"UPDATE batches SET status = ?, times = ?{sets} WHERE id = ?",
                     (status, json.dumps(times), *columns.values(), batch_id))  # fmt: skip

    # The batch's life, one step per read ----------------------------------------------------------------------

    def _retrieve(self, request: Request, conn: sqlite3.Connection) -> dict[str, Any]:
        batch_id = request.path.split("/")[3]
        row = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise Reply(404, error_body(f"No batch found with id '{batch_id}'.", param="batch_id"))
        lines = self._lines(conn, row["input_file_id"])
        status, fate = row["status"], row["fate"]
        if status == "validating":
            errors = validate(lines, row["endpoint"])
            if errors or fate == "fail":
                errors = errors or [
                    {
                        "code": "token_limit_exceeded",
                        "line": None,
                        "param": None,
                        "message": "Enqueued token limit reached for the model in organization.",
                    }
                ]
                self._set(conn, batch_id, "failed", errors=json.dumps(errors))  # fmt: skip
            else:
                self._set(conn, batch_id, "in_progress", total=len(lines))
        elif status == "in_progress" and fate == "expire":
            self._finish(conn, row, lines, "expired", runs=self.run_before_expiry, left="batch_expired")
        elif status == "in_progress" and fate != "stall":
            self._set(conn, batch_id, "finalizing")
        elif status == "finalizing":
            self._finish(conn, row, lines, "completed", runs=len(lines), left="")
        elif status == "cancelling":
            self._finish(conn, row, lines, "cancelled", runs=0, left="batch_cancelled")
        return self._batch(conn, batch_id)

    def _lines(self, conn: sqlite3.Connection, file_id: str) -> list[str]:
        row = conn.execute("SELECT content FROM files WHERE id = ?", (file_id,)).fetchone()
        return [line for line in bytes(row["content"]).decode("utf-8").split("\n") if line.strip()]

    def _finish(self, conn: sqlite3.Connection, row: sqlite3.Row, lines: list[str], status: str, *, runs: int,
                left: str) -> None:  # fmt: skip
        """Run the first `runs` lines; the others get the error `left`; write the output and error files."""
        output, errors = [], []
        messages = {
            "batch_expired": "This request could not be executed before the completion window expired.",
            "batch_cancelled": "This request was not executed because the batch was cancelled.",
        }
        for number, raw in enumerate(lines):
            line = json.loads(raw)
            record: dict[str, Any] = {"id": "batch_req_" + secrets.token_hex(12), "custom_id": line["custom_id"]}
            if number < runs:
                code, body = self.run(line["body"])
                record.update(response={"status_code": code, "request_id": secrets.token_hex(16), "body": body},
                              error=None)  # fmt: skip
                (output if code == 200 else errors).append(record)
            else:
                record.update(response=None, error={"code": left, "message": messages[left]})
                errors.append(record)
        files: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
        for name, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = "file-" + secrets.token_hex(12)
                data = "".join(json.dumps(r) + "\n" for r in records).encode()
                conn.execute("INSERT INTO files VALUES (?, 'batch_output', ?, ?, ?)",
                             (file_id, f"{row['id']}_{name}.jsonl", data, int(time.time())))  # fmt: skip
                files[name] = file_id
        self._set(conn, row["id"], status, completed=len(output), failed=len(errors), **files)

    # Running one request ------------------------------------------------------------------------------------

    def _chat(self, request: Request, conn: sqlite3.Connection) -> dict[str, Any]:
        status, body = self.run(request.json or {})
        if status != 200:  # a short Retry-After on errors worth another try, as OpenAI sends on 429 and 5xx
            raise Reply(status, body, {"retry-after-ms": "10"} if status == 429 or status >= 500 else {})
        return body

    def run(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A chat completion request's answer: the test's `answer`, else llmock's."""
        if self.answer is not None:
            return self.answer(body)
        if self.llm_base_url is None:
            return 500, error_body("the fake has neither an answer function nor an llm_base_url", kind="server_error")
        request = urllib.request.Request(
            self.llm_base_url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": "Bearer llmock-test-key"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    # For the tests --------------------------------------------------------------------------------------------

    def batches(self) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return [self._batch(conn, r["id"]) for r in conn.execute("SELECT id FROM batches ORDER BY rowid")]

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        with self.connect() as conn:
            row = conn.execute("SELECT input_file_id FROM batches WHERE id = ?", (batch_id,)).fetchone()
            return [json.loads(line) for line in self._lines(conn, row["input_file_id"])]


def validate(lines: list[str], endpoint: str) -> list[dict[str, Any]]:
    """The input file's errors as OpenAI reports them in the batch's `errors.data` (code, line, message, param)."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None

    def error(code: str, number: int, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "line": number, "message": message, "param": param})

    if not lines:
        error("empty_file", 0, "The batch input file is empty.")
    for number, raw in enumerate(lines, start=1):
        try:
            line = json.loads(raw)
        except ValueError:
            error("invalid_json_line", number, "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict):
            error("invalid_json_line", number, "This line is not a JSON object.")
            continue
        for name in ("custom_id", "method", "url", "body"):
            if name not in line:
                error("missing_required_parameter", number, f"Missing required parameter: '{name}'.", name)
        if "custom_id" in line:
            if line["custom_id"] in seen:
                error(
                    "duplicate_custom_id",
                    number,
                    "The custom_id for this request is a duplicate of another "
                    "request. The custom_id parameter must be unique for each request in a batch.",
                    "custom_id",
                )
            seen.add(line["custom_id"])
        if line.get("method", "POST") != "POST":
            error(
                "invalid_method",
                number,
                "The method provided for this request is not supported. Only POST is supported.",
                "method",
            )
        if "url" in line and line["url"] != endpoint:
            error("invalid_url", number, "The URL provided for this request does not match the batch endpoint.", "url")
        body = line.get("body")
        if isinstance(body, dict):
            if not body.get("model"):
                error("missing_required_parameter", number, "Missing required parameter: 'body.model'.", "body.model")
            elif model is None:
                model = body["model"]
            elif body["model"] != model:
                error(
                    "mismatched_model",
                    number,
                    f"The provided model '{body['model']}' does not match the model "
                    f"'{model}' of other requests in the batch. A batch may use one model only.",
                    "body.model",
                )
        elif "body" in line:
            error("invalid_request", number, "The body of this request must be a JSON object.", "body")
    return errors
