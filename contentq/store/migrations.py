"""Numbered schema migrations, applied in order when the store opens, each in its own transaction.

The runner is sqlite-utils' `Migrations` (the set "contentq", recorded in `_sqlite_migrations` under the
zero-padded number); the SQL bodies and their numbers are contentq's. Each migration gets the
`sqlite_utils.Database`, so this module needs nothing from `contentq.store.db` (which imports it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # sqlite-utils (with click, pluggy and numpy) loads only when a migration must run
    from sqlite_utils import Database
    from sqlite_utils.migrations import Migrations

MIGRATION_SET = "contentq"
"""The name of contentq's set in sqlite-utils' `_sqlite_migrations` table."""

LEGACY_TABLE = "_migrations"
"""Where contentq recorded migrations before it used sqlite-utils' runner (number, name, applied_at)."""


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    apply: Callable[[Database], None]

    @property
    def key(self) -> str:
        """Its name in `_sqlite_migrations`: the number, so rewording `name` never applies it twice."""
        return f"{self.number:04d}"


MIGRATIONS: list[Migration] = []


def migration(number: int, name: str) -> Callable[[Callable[[Database], None]], Callable[[Database], None]]:
    def register(fn: Callable[[Database], None]) -> Callable[[Database], None]:
        if any(m.number == number for m in MIGRATIONS):
            raise ValueError(f"migration {number} is defined twice")
        MIGRATIONS.append(Migration(number, name, fn))
        return fn

    return register


@migration(1, "initial schema: channels, posts, media, jobs, job events, usage, sends, rules, notifications")
def _initial(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE channels (
            ref TEXT PRIMARY KEY,           -- normalised reference: '@name' or a numeric id
            tg_id INTEGER,
            access_hash INTEGER,
            title TEXT,
            role TEXT NOT NULL DEFAULT 'source',
            last_message_id INTEGER NOT NULL DEFAULT 0,
            last_collected_at TEXT,
            last_error TEXT,
            collected_count INTEGER NOT NULL DEFAULT 0,
            duplicate_count INTEGER NOT NULL DEFAULT 0,
            filtered_count INTEGER NOT NULL DEFAULT 0,
            resolved_at TEXT,
            updated_at TEXT
        );
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            route TEXT NOT NULL,
            source TEXT,
            source_msg_id INTEGER,
            source_msg_ids TEXT,           -- JSON list: every message of an album
            grouped_id INTEGER,
            kind TEXT NOT NULL DEFAULT 'text',
            text_html TEXT NOT NULL DEFAULT '',
            is_forward INTEGER NOT NULL DEFAULT 0,
            posted_at TEXT,
            collected_at TEXT NOT NULL,
            state TEXT NOT NULL,
            state_reason TEXT,
            duplicate_of INTEGER REFERENCES posts(id) ON DELETE SET NULL,
            content_hash TEXT,
            minhash BLOB,
            rewrite_html TEXT,
            title TEXT,
            image_prompt TEXT,
            truncated INTEGER NOT NULL DEFAULT 0,
            rewriter TEXT,
            target TEXT,
            scheduled_at TEXT,
            published_at TEXT,
            message_ids TEXT,
            link TEXT,
            updated_at TEXT NOT NULL,
            UNIQUE (source, source_msg_id)
        );
        CREATE INDEX posts_state ON posts(state, route);
        CREATE INDEX posts_content_hash ON posts(content_hash);
        CREATE INDEX posts_scheduled ON posts(state, scheduled_at);
        CREATE TABLE media (
            id INTEGER PRIMARY KEY,
            post_id INTEGER REFERENCES posts(id) ON DELETE SET NULL,
            position INTEGER NOT NULL DEFAULT 0,
            origin TEXT NOT NULL DEFAULT 'donor',   -- donor | generated
            kind TEXT NOT NULL,                     -- photo | video | document | audio
            sha256 TEXT,
            path TEXT,                              -- relative to CONTENTQ_HOME/media, NULL when not downloaded
            mime TEXT,
            size INTEGER,
            width INTEGER,
            height INTEGER,
            prompt TEXT,
            backend TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX media_post ON media(post_id);
        CREATE INDEX media_sha ON media(sha256);
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            queue TEXT NOT NULL,
            key TEXT NOT NULL,
            status TEXT NOT NULL,
            handler TEXT,                  -- dotted path when not the default for the kind
            payload TEXT NOT NULL DEFAULT '{}',
            post_id INTEGER,
            parent_id TEXT,
            rq_id TEXT,
            generation INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 1,
            next_retry_at TEXT,
            retry_reason TEXT,
            error TEXT,
            result TEXT,
            worker TEXT,
            created_at TEXT NOT NULL,
            enqueued_at TEXT,
            started_at TEXT,
            finished_at TEXT,
            duration_ms REAL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX jobs_status ON jobs(status, queue);
        CREATE INDEX jobs_created ON jobs(created_at);
        CREATE INDEX jobs_post ON jobs(post_id);
        CREATE INDEX jobs_key ON jobs(kind, key);
        CREATE TABLE job_events (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL,
            at TEXT NOT NULL,
            level TEXT NOT NULL DEFAULT 'info',
            event TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            data TEXT
        );
        CREATE INDEX job_events_job ON job_events(job_id, id);
        CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            post_id INTEGER,
            route TEXT,
            job_id TEXT,
            model TEXT,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0
        );
        CREATE INDEX usage_at ON usage(at);
        CREATE TABLE sends (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL,
            target TEXT NOT NULL,
            part INTEGER NOT NULL,
            random_id INTEGER NOT NULL,
            status TEXT NOT NULL,          -- attempting | sent | deleted | failed
            message_ids TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (post_id, target, part)
        );
        CREATE TABLE rules (
            route TEXT PRIMARY KEY,
            next_run_at TEXT,
            runs INTEGER NOT NULL DEFAULT 0,
            successes INTEGER NOT NULL DEFAULT 0,
            last_run_at TEXT,
            last_error TEXT
        );
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            at TEXT NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 1,
            suppressed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX notifications_key ON notifications(key, at);
        """,
    )


@migration(5, "publish: dispatch claim, publication rounds, unreachable tries; sends per round with random ids")
def _publish(db: Database) -> None:
    run_script(
        db,
        """
        ALTER TABLE posts ADD COLUMN dispatched_at TEXT;
        ALTER TABLE posts ADD COLUMN publish_round INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE posts ADD COLUMN unreachable_tries INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE sends_v5 (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL,
            target TEXT NOT NULL,
            round INTEGER NOT NULL DEFAULT 0,  -- a restarted publication sends with new random ids
            part INTEGER NOT NULL,
            kind TEXT,                          -- text | media | album
            random_id INTEGER NOT NULL,         -- of the first item
            random_ids TEXT,                    -- JSON list, one per album item
            status TEXT NOT NULL,               -- attempting | sent | deleted | failed
            message_ids TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (post_id, target, round, part)
        );
        INSERT INTO sends_v5 (id, post_id, target, part, random_id, random_ids, status, message_ids, error,
                              created_at, updated_at)
            SELECT id, post_id, target, part, random_id, json_array(random_id), status, message_ids, error,
                   created_at, updated_at FROM sends;
        DROP TABLE sends;
        ALTER TABLE sends_v5 RENAME TO sends;
        CREATE INDEX sends_post ON sends(post_id, round);
        CREATE INDEX posts_dispatch ON posts(state, dispatched_at, scheduled_at)
        """,
    )


@migration(6, "jobs: count reschedules apart from attempts")
def _reschedules(db: Database) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN reschedules INTEGER NOT NULL DEFAULT 0")


@migration(10, "posts: the origin of a forwarded post (name, link) for a route's forward_credit")
def _forward_origin(db: Database) -> None:
    db.execute("ALTER TABLE posts ADD COLUMN forward_name TEXT")
    db.execute("ALTER TABLE posts ADD COLUMN forward_link TEXT")


@migration(20, "donor footers per source; posts keep the donor's text, a duplicate's similarity, their numbers")
def _donor_footers(db: Database) -> None:
    run_script(
        db,
        """
        ALTER TABLE posts ADD COLUMN original_html TEXT;  -- as the donor posted it, when a footer was stripped
        ALTER TABLE posts ADD COLUMN similarity REAL;     -- of a duplicate to the post it duplicates
        ALTER TABLE posts ADD COLUMN numbers TEXT;        -- the numbers of its text, for near-duplicate checks
        CREATE TABLE source_footers (
            source TEXT PRIMARY KEY,
            trailer TEXT NOT NULL DEFAULT '[]',  -- JSON list of footer line keys (normalised text + links)
            header TEXT NOT NULL DEFAULT '[]',
            refs TEXT NOT NULL DEFAULT '[]',     -- the donor's own channels named in them ('@name')
            lines TEXT NOT NULL DEFAULT '[]',    -- the lines as they read
            sample INTEGER NOT NULL DEFAULT 0,
            learned_at TEXT NOT NULL
        )
        """,
    )


@migration(50, "workers: who is alive and what each one runs (liveness owned by contentq, not by RQ's registries)")
def _workers(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE workers (
            name TEXT PRIMARY KEY,      -- the RQ worker name, which jobs.worker names
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            queues TEXT NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL, -- refreshed every third of CONTENTQ_WORKER_HEARTBEAT_TTL, Redis or not
            current_job TEXT,           -- the job record it runs now
            stopped_at TEXT             -- a clean exit (a killed worker just stops beating)
        );
        CREATE INDEX workers_heartbeat ON workers(heartbeat_at)
        """,
    )


@migration(60, "dedup index in SQLite: LSH band keys per post, the layout they were built with")
def _dedup_bands(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE dedup_bands (
            slot INTEGER PRIMARY KEY,  -- post id * 64 + band number: a post's rows together, pruned by range
            key INTEGER NOT NULL       -- 32-bit hash of the band's values (content/dedup.py: band_keys)
        );
        CREATE INDEX dedup_bands_key ON dedup_bands(key);
        CREATE TABLE dedup_state (
            name TEXT PRIMARY KEY,     -- 'bands': the layout of dedup_bands, e.g. '16x4/affine32/ms32'
            value TEXT NOT NULL
        )
        """,
    )


@migration(61, "job events 'started' and 'succeeded' written by triggers: one statement per job start and end")
def _job_event_triggers(db: Database) -> None:
    # run_tracked starts and ends a job with one UPDATE each (runtime/execute.py); the event log follows here,
    # in the same statement's implicit transaction, rather than from a second statement and a BEGIN/COMMIT.
    db.execute(
        """
        CREATE TRIGGER job_started AFTER UPDATE OF attempts ON jobs
        WHEN NEW.status = 'in_progress' AND NEW.attempts > OLD.attempts
        BEGIN
            INSERT INTO job_events (job_id, at, level, event, message, data)
            VALUES (NEW.id, NEW.started_at, 'info', 'started', 'attempt ' || NEW.attempts,
                    CASE WHEN NEW.worker IS NULL THEN NULL ELSE json_object('worker', NEW.worker) END);
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER job_succeeded AFTER UPDATE OF status ON jobs
        WHEN NEW.status = 'succeeded' AND OLD.status = 'in_progress'
        BEGIN
            INSERT INTO job_events (job_id, at, level, event, message, data)
            VALUES (NEW.id, NEW.finished_at, 'info', 'succeeded', '',
                    json_object('duration_ms', round(NEW.duration_ms, 1)));
        END
        """
    )


@migration(70, "listen: listener heartbeats; donor edits of published posts; donor deletions per post")
def _listen(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE listeners (
            name TEXT PRIMARY KEY,             -- one listener per Telegram session ('listen' by default)
            pid INTEGER,
            host TEXT,
            sources TEXT NOT NULL DEFAULT '[]',
            state TEXT NOT NULL,               -- starting | catching_up | connected | disconnected | stopped
            started_at TEXT,
            heartbeat_at TEXT NOT NULL,
            connected_since TEXT,
            disconnected_since TEXT,
            disconnect_reason TEXT,
            last_update_at TEXT,               -- when the last live update was received
            lag_seconds REAL,                  -- its arrival behind the message's own date
            updates INTEGER NOT NULL DEFAULT 0,
            reconnects INTEGER NOT NULL DEFAULT 0
        );
        ALTER TABLE posts ADD COLUMN donor_deleted_ids TEXT;  -- JSON list: its donor messages deleted so far
        ALTER TABLE posts ADD COLUMN donor_edited_at TEXT;
        CREATE TABLE post_edits (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL,
            edit_key TEXT NOT NULL,            -- hash of the donor's new text: one edit of ours per donor edit
            source_html TEXT NOT NULL,         -- the donor's text after the edit
            html TEXT,                         -- our new text (rewritten once, then kept for retries)
            status TEXT NOT NULL,              -- pending | rewritten | editing | edited | skipped | failed
            reason TEXT,
            message_ids TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (post_id, edit_key)
        )
        """,
    )


@migration(110, "web: indexes for the jobs page (filter + newest first), 24 h charts and the live post feed")
def _web_indexes(db: Database) -> None:
    run_script(
        db,
        """
        CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs(status, created_at);
        CREATE INDEX IF NOT EXISTS jobs_queue_created ON jobs(queue, created_at);
        CREATE INDEX IF NOT EXISTS jobs_kind_created ON jobs(kind, created_at);
        CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at);
        CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent_id);
        CREATE INDEX IF NOT EXISTS posts_updated ON posts(updated_at, id);
        CREATE INDEX IF NOT EXISTS posts_route_state ON posts(route, state)
        """,
    )


@migration(112, "web: post_changes, the live post feed's change sequence, filled by triggers on posts")
def _post_changes(db: Database) -> None:
    # The feed's cursor must follow commit order. A timestamp taken before the write lock does not (nor does one
    # from another process's clock); an AUTOINCREMENT id assigned inside the writing transaction does, and is
    # never reused even after purge deletes the newest rows.
    run_script(
        db,
        """
        CREATE TABLE post_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            post_id INTEGER NOT NULL,
            state TEXT NOT NULL,               -- the state the post moved to
            at TEXT NOT NULL                   -- its updated_at then (shown, and purge goes by it)
        );
        INSERT INTO post_changes (post_id, state, at)
            SELECT id, state, updated_at FROM posts ORDER BY updated_at, id
        """,
    )
    for event in ("INSERT", "UPDATE OF state"):  # trigger bodies hold ';': one statement each, not run_script
        name = "post_changes_" + event.split()[0].lower()
        db.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON posts BEGIN"
            " INSERT INTO post_changes (post_id, state, at)"
            " VALUES (NEW.id, NEW.state, NEW.updated_at); END"
        )


@migration(113, "web: panel sessions (a random id per login, kept as its hash), with expiry and the next flash message")
def _web_sessions(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE web_sessions (
            id TEXT PRIMARY KEY,               -- SHA-256 of the cookie's value: the value itself is not kept
            token_mac TEXT NOT NULL,           -- which panel token it logged in with: a new token ends it
            created_at TEXT NOT NULL,          -- the absolute expiry counts from here
            seen_at TEXT NOT NULL,             -- the idle expiry counts from here (updated at most once a minute)
            flash TEXT                         -- the message the next page shows once (set after a form's action)
        )
        """,
    )


@migration(120, "triggers: a job's 'enqueued' event, and its worker's current job at its start and end")
def _job_insert_and_worker_triggers(db: Database) -> None:
    # enqueue (runtime/tracking.py) records a job with one INSERT … WHERE NOT EXISTS (an active job of its key),
    # atomic on its own; its first event follows here, in that statement's implicit transaction.
    db.execute(
        """
        CREATE TRIGGER job_enqueued AFTER INSERT ON jobs
        WHEN NEW.status = 'queued'
        BEGIN
            INSERT INTO job_events (job_id, at, level, event, message, data)
            VALUES (NEW.id, coalesce(NEW.enqueued_at, NEW.created_at), 'info', 'enqueued',
                    'queue ' || NEW.queue || CASE WHEN NEW.next_retry_at IS NULL THEN '' ELSE
                        ', runs in ' || CAST(round((julianday(NEW.next_retry_at)
                            - julianday(coalesce(NEW.enqueued_at, NEW.created_at))) * 86400) AS INTEGER) || ' s' END,
                    CASE WHEN NEW.parent_id IS NULL THEN NULL ELSE json_object('parent', NEW.parent_id) END);
        END
        """
    )
    # The worker's row names the job it runs (the reconcile tells a busy worker from one that moved on by it),
    # set by the job's own start and end statements rather than by two more commits around each job.
    db.execute(
        """
        CREATE TRIGGER job_worker_busy AFTER UPDATE OF attempts ON jobs
        WHEN NEW.status = 'in_progress' AND NEW.attempts > OLD.attempts AND NEW.worker IS NOT NULL
        BEGIN
            UPDATE workers SET current_job = NEW.id, heartbeat_at = NEW.started_at WHERE name = NEW.worker;
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER job_worker_free AFTER UPDATE OF status ON jobs
        WHEN OLD.status = 'in_progress' AND NEW.status <> 'in_progress' AND OLD.worker IS NOT NULL
        BEGIN
            UPDATE workers SET current_job = NULL WHERE name = OLD.worker AND current_job = OLD.id;
        END
        """
    )


@migration(121, "leaner job indexes: jobs_status dropped (jobs_status_created leads with status too); partial indexes")
def _leaner_job_indexes(db: Database) -> None:
    # Every index of `jobs` is written at each enqueue and most at each start and end. Post, parent and finish
    # time are NULL for many jobs (and finished_at for every running one): their indexes now skip those rows,
    # and still serve `post_id = ?`, `parent_id = ?` and `finished_at < ?`, which imply NOT NULL.
    run_script(
        db,
        """
        DROP INDEX IF EXISTS jobs_status;
        DROP INDEX IF EXISTS jobs_post;
        CREATE INDEX jobs_post ON jobs(post_id) WHERE post_id IS NOT NULL;
        DROP INDEX IF EXISTS jobs_parent;
        CREATE INDEX jobs_parent ON jobs(parent_id) WHERE parent_id IS NOT NULL;
        DROP INDEX IF EXISTS jobs_finished;
        CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL
        """,
    )


@migration(127, "a cancelled job's worker keeps it as its current job until the run has really stopped")
def _cancel_keeps_current_job(db: Database) -> None:
    # Cancel means stop (runtime/stopping.py): a running job that is cancelled goes on to its next safe point.
    # Until then its worker's row must still name it, so that Retry is refused and no other generation of the
    # job starts (the start statement of run_tracked looks here). The run's own end clears it.
    db.execute("DROP TRIGGER IF EXISTS job_worker_free")
    db.execute(
        """
        CREATE TRIGGER job_worker_free AFTER UPDATE OF status ON jobs
        WHEN OLD.status = 'in_progress' AND NEW.status NOT IN ('in_progress', 'cancelled') AND OLD.worker IS NOT NULL
        BEGIN
            UPDATE workers SET current_job = NULL WHERE name = OLD.worker AND current_job = OLD.id;
        END
        """
    )


@migration(122, "post history: post_changes records old state, event, actor and reason of every move")
def _post_history(db: Database) -> None:
    # contentq.lifecycle writes each move's row itself, in the move's transaction, with what a trigger cannot know
    # (who, why, by which event), before it updates the post; it names the event of a new post's row (written by
    # the insert trigger). The update trigger now adds a row only for a change the lifecycle did not record (SQL
    # typed by hand): the feed still sees it, without event or actor. Rows from before keep their state and time,
    # no event and no actor; their old state is the one of the post's row before.
    run_script(
        db,
        """
        DROP TRIGGER IF EXISTS post_changes_update;
        ALTER TABLE post_changes ADD COLUMN from_state TEXT;
        ALTER TABLE post_changes ADD COLUMN event TEXT;
        ALTER TABLE post_changes ADD COLUMN actor TEXT;
        ALTER TABLE post_changes ADD COLUMN reason TEXT;
        CREATE INDEX post_changes_post ON post_changes(post_id, id);
        UPDATE post_changes SET from_state = (
            SELECT before.state FROM post_changes AS before
            WHERE before.post_id = post_changes.post_id AND before.id < post_changes.id
            ORDER BY before.id DESC LIMIT 1
        )
        """,
    )
    db.execute(
        """
        CREATE TRIGGER post_changes_update AFTER UPDATE OF state ON posts
        WHEN NOT EXISTS (
            SELECT 1 FROM post_changes WHERE id = (SELECT MAX(id) FROM post_changes)
            AND post_id = NEW.id AND state = NEW.state AND at = NEW.updated_at AND event IS NOT NULL
        )
        BEGIN
            INSERT INTO post_changes (post_id, from_state, state, at)
            VALUES (NEW.id, OLD.state, NEW.state, NEW.updated_at);
        END
        """
    )


@migration(140, "backups and restores: a record of each `db backup` and `db restore`")
def _backups(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE backups (
            id INTEGER PRIMARY KEY,
            taken_at TEXT NOT NULL,         -- when the snapshot was read: the copy holds what was committed then
            path TEXT NOT NULL,
            size_bytes INTEGER,             -- the compressed file
            db_bytes INTEGER,               -- the database it holds
            seconds REAL,                   -- copy, check and compression together
            verified INTEGER NOT NULL,      -- integrity_check ok and the copy's row counts equal the snapshot's
            integrity TEXT,
            row_counts TEXT,                -- JSON {table: rows}
            removed_at TEXT                 -- rotated away (or found missing)
        );
        CREATE INDEX backups_taken ON backups(taken_at);
        CREATE TABLE restores (
            id INTEGER PRIMARY KEY,
            restored_at TEXT NOT NULL,
            source TEXT NOT NULL,
            replaced TEXT,                  -- where the database it replaced was kept
            newest_record_at TEXT           -- the newest time written in the copy: anything after it may be missing
        );
        """,
    )


@migration(129, "media: what a file is sent as (duration, spoiler, audio title and performer, name, sticker emoji)")
def _media_attributes(db: Database) -> None:
    # Without these a voice message went out with 0 s, a video as 1x1 of 0 s and a spoilered photo uncovered.
    run_script(
        db,
        """
        ALTER TABLE media ADD COLUMN duration REAL;
        ALTER TABLE media ADD COLUMN spoiler INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE media ADD COLUMN title TEXT;
        ALTER TABLE media ADD COLUMN performer TEXT;
        ALTER TABLE media ADD COLUMN file_name TEXT;
        ALTER TABLE media ADD COLUMN emoji TEXT
        """,
    )


@migration(150, "posts: full-text search (FTS5) over the original and the rewritten text, kept by triggers")
def _post_search(db: Database) -> None:
    # An external-content FTS5 table: the text stays in `posts` only; the index follows every insert, delete and
    # change of either text through triggers in the writing transaction, whatever process writes. The tokenizer
    # folds case and diacritics (Cyrillic included); the HTML tags' names are indexed as words too.
    db.execute(
        "CREATE VIRTUAL TABLE posts_fts USING fts5(text_html, rewrite_html, content='posts', content_rowid='id',"
        " tokenize='unicode61 remove_diacritics 2')"
    )
    forget = (
        "INSERT INTO posts_fts (posts_fts, rowid, text_html, rewrite_html)"
        " VALUES ('delete', OLD.id, OLD.text_html, OLD.rewrite_html);"
    )
    index = "INSERT INTO posts_fts (rowid, text_html, rewrite_html) VALUES (NEW.id, NEW.text_html, NEW.rewrite_html);"
    for name, event, body in (
        ("posts_fts_insert", "INSERT", index),
        ("posts_fts_delete", "DELETE", forget),
        ("posts_fts_update", "UPDATE OF text_html, rewrite_html", forget + " " + index),
    ):  # trigger bodies hold ';': one statement each, not run_script
        db.execute(f"CREATE TRIGGER {name} AFTER {event} ON posts BEGIN {body} END")
    db.execute("INSERT INTO posts_fts (posts_fts) VALUES ('rebuild')")


@migration(131, "usage: failed LLM requests recorded too (their error), so usage and stats count them")
def _usage_errors(db: Database) -> None:
    # A row per HTTP request to the LLM: tokens and cost when it answered, the error (and no tokens) when not.
    db.execute("ALTER TABLE usage ADD COLUMN error TEXT")


@migration(160, "deliveries: one per post and destination (X, Instagram, Telegram), their parts and history; buckets")
def _deliveries(db: Database) -> None:
    # A post fans out into deliveries when its route names `destinations` (docs/destinations.md). Each delivery
    # has its own state (publish/deliveries.py declares the moves), slot, job and what the platform returned;
    # each part (a tweet of a thread, an Instagram container or publish) is recorded before its request leaves.
    run_script(
        db,
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            destination TEXT NOT NULL,      -- 'telegram:@chan', 'x:main', 'instagram:brand'
            platform TEXT NOT NULL,
            account TEXT NOT NULL,
            state TEXT NOT NULL,
            state_reason TEXT,
            due_at TEXT,                    -- its slot: the post's, later while it waits (a limit, a quota)
            round INTEGER NOT NULL DEFAULT 0,
            unreachable_tries INTEGER NOT NULL DEFAULT 0,
            platform_ids TEXT,              -- JSON list: tweet ids, the Instagram media id, Telegram message ids
            link TEXT,
            notes TEXT,                     -- how it was adapted (a thread, images left out, a caption cut)
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            published_at TEXT,
            UNIQUE (post_id, destination)
        );
        CREATE INDEX deliveries_state ON deliveries(state, due_at);
        CREATE TABLE delivery_parts (
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
            round INTEGER NOT NULL,
            part INTEGER NOT NULL,
            status TEXT NOT NULL,           -- attempting (recorded before the call), sent, failed
            platform_id TEXT,               -- the tweet id, the container id, the published media id
            detail TEXT,                    -- JSON: what the part needs again after a crash (container ids …)
            attempted_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            error TEXT,
            PRIMARY KEY (delivery_id, round, part)
        );
        CREATE TABLE delivery_changes (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
            old_state TEXT,
            new_state TEXT NOT NULL,
            event TEXT NOT NULL,
            actor TEXT,                     -- who moved it (contentq.actors: job:ID, cli:USER, web:SESSION)
            reason TEXT,
            at TEXT NOT NULL
        );
        CREATE INDEX delivery_changes_delivery ON delivery_changes(delivery_id, id);
        CREATE TABLE rate_buckets (
            key TEXT PRIMARY KEY,           -- 'x:main', 'instagram:brand'
            tokens REAL NOT NULL,
            updated_at REAL NOT NULL        -- unix time of the last refill
        )
        """,
    )


@migration(180, "Telegram accounts: named sessions with proxy, fingerprint and budget; their health; per-account peers")
def _telegram_accounts(db: Database) -> None:
    # Today's single session (CONTENTQ_HOME/telegram.session) becomes the account `main`, and the channels it
    # resolved keep their access hashes as main's (an access hash is valid for the account that got it only).
    run_script(
        db,
        """
        CREATE TABLE tg_accounts (
            name TEXT PRIMARY KEY,
            session_file TEXT NOT NULL,     -- relative to CONTENTQ_HOME (mode 0600)
            proxy TEXT,                     -- socks5://, socks4://, http:// or mtproxy:// URL, NULL: direct
            device_model TEXT,              -- the fingerprint Telegram shows (NULL: the .env setting)
            system_version TEXT,
            app_version TEXT,
            lang_code TEXT,
            send_budget INTEGER,            -- sends a minute (NULL: CONTENTQ_PUBLISH_ACCOUNT_BUDGET)
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE tg_account_health (
            account TEXT PRIMARY KEY REFERENCES tg_accounts(name) ON DELETE CASCADE,
            status TEXT NOT NULL,           -- connected, unreachable, logged_out, banned, restricted
            detail TEXT,                    -- what was seen (the error), and what to do
            since TEXT NOT NULL,            -- when this status began
            checked_at TEXT NOT NULL,       -- the last report
            reporter TEXT,                  -- the process that reported it (worker, listener, cli)
            user_id INTEGER,                -- who the session is logged in as, once seen
            username TEXT,
            flood_until TEXT,               -- a FLOOD_WAIT Telegram asked of this account ends then
            flood_seconds INTEGER,
            flood_during TEXT,              -- what it was doing: send, read
            alerted TEXT                    -- the episode ('status@since') the admin was told about
        );
        CREATE TABLE account_channels (
            account TEXT NOT NULL REFERENCES tg_accounts(name) ON DELETE CASCADE,
            ref TEXT NOT NULL,
            tg_id INTEGER NOT NULL,
            access_hash INTEGER,
            title TEXT,
            resolved_at TEXT NOT NULL,
            PRIMARY KEY (account, ref)
        )
        """,
    )
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    db.execute(
        "INSERT INTO tg_accounts (name, session_file, created_at, updated_at)"
        " VALUES ('main', 'telegram.session', ?, ?)",
        (stamp, stamp),
    )
    db.execute(
        "INSERT INTO account_channels (account, ref, tg_id, access_hash, title, resolved_at)"
        " SELECT 'main', ref, tg_id, access_hash, title, COALESCE(resolved_at, updated_at) FROM channels"
        " WHERE tg_id IS NOT NULL"
    )


@migration(200, "insights: what each published post achieved, per destination, as samples over time; subscribers")
def _insights(db: Database) -> None:
    # One item per (post, destination) measured: its rollup (the latest figures and the figures at 24 h, set once
    # the samples bracket that age) is what the reports read, so a report never scans the samples. A sample is
    # taken by one fetch round: UNIQUE (item_id, round) keeps a rescheduled round from taking it twice.
    run_script(
        db,
        """
        CREATE TABLE insight_items (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            destination TEXT NOT NULL,      -- 'telegram:@chan', 'x:main', 'instagram:brand'
            platform TEXT NOT NULL,
            account TEXT NOT NULL,
            platform_id TEXT NOT NULL,      -- what is measured: the first message, tweet of a thread, the media
            route TEXT NOT NULL,
            source TEXT,                    -- the donor channel
            rewriter TEXT,
            published_at TEXT NOT NULL,
            link TEXT,
            llm_cost REAL NOT NULL DEFAULT 0,
            samples INTEGER NOT NULL DEFAULT 0,
            sampled_at TEXT,
            views INTEGER, forwards INTEGER, replies INTEGER, reactions INTEGER,
            reactions_json TEXT,            -- {"👍": 12, "🔥": 3, "custom:5368…": 1}
            views_24h REAL, forwards_24h REAL, replies_24h REAL, reactions_24h REAL,
            gone INTEGER NOT NULL DEFAULT 0, -- deleted on the platform: no longer fetched
            UNIQUE (post_id, destination)
        );
        CREATE INDEX insight_items_published ON insight_items(published_at);
        CREATE TABLE insight_samples (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL REFERENCES insight_items(id) ON DELETE CASCADE,
            round TEXT NOT NULL,            -- the fetch round that took it
            at TEXT NOT NULL,
            age_s INTEGER NOT NULL,         -- seconds since publication
            views INTEGER, forwards INTEGER, replies INTEGER, reactions INTEGER, reactions_json TEXT,
            UNIQUE (item_id, round)
        );
        CREATE INDEX insight_samples_age ON insight_samples(item_id, age_s);
        CREATE INDEX insight_samples_at ON insight_samples(at);
        CREATE TABLE channel_samples (
            id INTEGER PRIMARY KEY,
            destination TEXT NOT NULL,
            round TEXT NOT NULL,
            at TEXT NOT NULL,
            subscribers INTEGER NOT NULL,
            UNIQUE (destination, round)
        );
        CREATE INDEX channel_samples_at ON channel_samples(destination, at)
        """,
    )


@migration(190, "people: panel users (name, role, argon2 password hash, routes) and their API tokens (hashed)")
def _users(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY COLLATE NOCASE,  -- what a person logs in with (`web:<name>` in the history)
            role TEXT NOT NULL,                -- owner, editor, viewer (contentq.people.roles)
            password_hash TEXT,                -- argon2id (argon2-cffi PasswordHasher), NULL: no password yet
            routes TEXT NOT NULL DEFAULT '[]', -- JSON list: the routes an editor acts on
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE user_tokens (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            hash TEXT NOT NULL UNIQUE,         -- SHA-256 of the token (256 random bits): the token itself is not kept
            hint TEXT NOT NULL,                -- its last 4 characters, to tell tokens apart in a listing
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        );
        CREATE INDEX user_tokens_user ON user_tokens(user)
        """,
    )


@migration(191, "people: a panel session names its user and the address and browser it logged in from")
def _session_users(db: Database) -> None:
    run_script(
        db,
        """
        ALTER TABLE web_sessions ADD COLUMN user TEXT;   -- NULL: logged in with the shared panel token
        ALTER TABLE web_sessions ADD COLUMN address TEXT;
        ALTER TABLE web_sessions ADD COLUMN agent TEXT;
        CREATE INDEX web_sessions_user ON web_sessions(user)
        """,
    )


@migration(192, "people: failed panel logins, for the throttle per user and per client address")
def _login_failures(db: Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE login_failures (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            name TEXT NOT NULL,                -- as typed (lower case), known user or not
            address TEXT NOT NULL
        );
        CREATE INDEX login_failures_name ON login_failures(name, at);
        CREATE INDEX login_failures_address ON login_failures(address, at)
        """,
    )


@migration(193, "audit: job events name their actor; audit_events records what people do besides posts and jobs")
def _audit(db: Database) -> None:
    # A job's events written by a person (retry, cancel) carry the actor (NULL: the job itself, or a trigger);
    # post moves already carry theirs in post_changes. What is neither (a queue paused, a text edited, a user
    # added, a session revoked) is an audit_events row. `contentq audit` reads all three.
    run_script(
        db,
        """
        ALTER TABLE job_events ADD COLUMN actor TEXT;
        CREATE INDEX job_events_actor ON job_events(actor, at) WHERE actor IS NOT NULL;
        CREATE INDEX post_changes_actor ON post_changes(actor, at);
        CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            kind TEXT NOT NULL,                -- post, job, queue, user, session, login
            target TEXT,                       -- the post id, job id, queue, user name
            action TEXT NOT NULL,              -- edited, paused, resumed, added, removed, token_issued, …
            detail TEXT
        );
        CREATE INDEX audit_events_at ON audit_events(at)
        """,
    )


@migration(170, "the admin bot: cards sent, presses and messages handled, prompts awaiting a reply, alerts to send")
def _bot(db: Database) -> None:
    # The bot (`contentq bot`, docs/bot.md) keeps what it sent and handled here, so a restart neither sends a
    # card twice nor runs a press twice. A card is claimed (status 'sending') before its first message leaves.
    run_script(
        db,
        """
        CREATE TABLE bot_cards (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            chat_id INTEGER NOT NULL,
            entry INTEGER NOT NULL,         -- the post_changes id of the move into awaiting_approval it shows
            version INTEGER NOT NULL,       -- the post's state version its buttons are signed for
            status TEXT NOT NULL,           -- sending, open (buttons live), closed (shows its outcome), failed
            part_ids TEXT NOT NULL DEFAULT '[]',  -- JSON: the messages showing the post as it will be published
            control_id INTEGER,             -- the message with the buttons, edited to the outcome
            outcome TEXT,
            error TEXT,
            retry_at TEXT,                  -- a card whose send failed is tried again from then
            sent_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (post_id, chat_id, entry)
        );
        CREATE INDEX bot_cards_open ON bot_cards(status, post_id);
        CREATE TABLE bot_presses (
            query_id INTEGER PRIMARY KEY,   -- Telegram's id of the callback query: a press seen again is not run
            at TEXT NOT NULL,
            user_id INTEGER NOT NULL,
            chat_id INTEGER NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            result TEXT
        );
        CREATE TABLE bot_prompts (
            chat_id INTEGER NOT NULL,
            message_id INTEGER NOT NULL,    -- the bot's question (the admin's reply to it is the answer)
            kind TEXT NOT NULL,             -- reject (the reason) or edit (the new text)
            post_id INTEGER NOT NULL,
            version INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            answered_at TEXT,
            PRIMARY KEY (chat_id, message_id)
        );
        CREATE TABLE bot_messages (
            chat_id INTEGER NOT NULL,       -- a command or an answer handled: Telegram may hand it over again
            message_id INTEGER NOT NULL,    -- after a restart (the update state is saved once a minute)
            at TEXT NOT NULL,
            PRIMARY KEY (chat_id, message_id)
        );
        CREATE TABLE bot_outbox (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,              -- the notification's key: which buttons fit (a job, a queue, a post)
            level TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            retry_at TEXT,                  -- refused by every admin chat: tried again from then
            error TEXT
        );
        CREATE INDEX bot_outbox_unsent ON bot_outbox(sent_at, id)
        """,
    )


@migration(210, "rewrite batches: posts rewritten through the OpenAI Batch API, one row per batch and per post")
def _rewrite_batches(db: Database) -> None:
    # A route with rewrite_mode = "batch" (or "auto", its slot far enough) sends its posts' rewrites as lines of
    # one JSONL file through the Batch API at about half the price (docs/content.md, "Batch rewrites"). A batch
    # row is its parent job's; an item is one post's request line, its answer (or error) once the batch is over.
    run_script(
        db,
        """
        CREATE TABLE rewrite_batches (
            id INTEGER PRIMARY KEY,
            job_id TEXT,                    -- the parent job that submits and polls it
            model TEXT NOT NULL,
            status TEXT NOT NULL,           -- gathering, then the provider's: validating, in_progress, finalizing,
                                            -- completed, failed, expired, cancelling, cancelled
            provider_id TEXT,               -- the provider's batch id (batch_...)
            input_file_id TEXT,
            output_file_id TEXT,
            error_file_id TEXT,
            lines INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            created_at TEXT NOT NULL,
            submitted_at TEXT,
            ended_at TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX rewrite_batches_status ON rewrite_batches(status);
        CREATE TABLE batch_items (
            id INTEGER PRIMARY KEY,
            batch_id INTEGER NOT NULL REFERENCES rewrite_batches(id) ON DELETE CASCADE,
            post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            route TEXT NOT NULL,
            custom_id TEXT NOT NULL UNIQUE, -- the line's id in the input and output files
            status TEXT NOT NULL,           -- queued, answered, failed (a line error), direct (fell back), done
            body TEXT NOT NULL,             -- the chat completion request (JSON), as a direct call would send it
            source_hash TEXT NOT NULL,      -- the donor text it was asked for: an edit since makes the answer stale
            deadline TEXT,                  -- when it falls back to a direct call (its slot less a margin)
            answer TEXT,                    -- the line's chat completion (JSON)
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX batch_items_batch ON batch_items(batch_id, status);
        CREATE INDEX batch_items_post ON batch_items(post_id, id);
        ALTER TABLE usage ADD COLUMN batch INTEGER NOT NULL DEFAULT 0
        """,
    )


@migration(211, "batch items: the estimated cost of a line not yet answered, which budgets count as spent")
def _batch_item_estimate(db: Database) -> None:
    # A batch line is paid for when the batch runs, but its usage row is written when its post's child job takes
    # the answer (up to the batch window later): until then budgets count this estimate instead.
    # Budgets sum the pending lines' estimates before every paid call: a small partial index holds just those.
    run_script(
        db,
        """
        ALTER TABLE batch_items ADD COLUMN estimate REAL NOT NULL DEFAULT 0;
        CREATE INDEX batch_items_pending ON batch_items(route, created_at, estimate)
            WHERE status IN ('queued', 'answered')
        """,
    )


@migration(215, "usage: prompt tokens served from the provider's cache, image API calls (kind, images, size)")
def _usage_cache_and_images(db: Database) -> None:
    # tokens_cached: the part of tokens_in the provider's prompt cache served (usage.prompt_tokens_details
    # .cached_tokens), billed at the cached price; saved: what that cost less than full price. An image API call
    # is a row of kind 'image' with images = how many it made and detail = its size and quality. Budgets sum a
    # route's (and every route's) cost over a day or a month before each paid call: the two indexes hold the
    # cost, so the sums never read the table (bench/budget_gate.py, 200,000 rows, at a month's end: 402 ms a
    # check without, 12 ms with); usage(at, cost) replaces usage(at).
    run_script(
        db,
        """
        ALTER TABLE usage ADD COLUMN kind TEXT NOT NULL DEFAULT 'llm';
        ALTER TABLE usage ADD COLUMN tokens_cached INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage ADD COLUMN saved REAL NOT NULL DEFAULT 0;
        ALTER TABLE usage ADD COLUMN images INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage ADD COLUMN detail TEXT;
        CREATE INDEX usage_route_at ON usage(route, at, cost);
        CREATE INDEX usage_at_cost ON usage(at, cost);
        DROP INDEX usage_at
        """,
    )


@migration(220, "insights: a count of items deleted, so a process's rollup of them knows to read them all again")
def _insight_deletions(db: Database) -> None:
    # The panel keeps every item of the report's window in memory and reads only the rows added (id above the
    # largest it holds) and the figures at 24 h set since (contentq/insights/rollup.py). A deleted item (its post
    # purged or deleted) would stay there, and its id could come back: the trigger counts deletions instead.
    run_script(
        db,
        """
        CREATE TABLE insight_deletions (id INTEGER PRIMARY KEY CHECK (id = 1), deleted INTEGER NOT NULL);
        INSERT INTO insight_deletions (id, deleted) VALUES (1, 0)
        """,
    )
    db.execute(
        """
        CREATE TRIGGER insight_items_deleted AFTER DELETE ON insight_items
        BEGIN
            UPDATE insight_deletions SET deleted = deleted + 1 WHERE id = 1;
        END
        """
    )


@migration(240, "people: an API token's label (what it is for); each user's last login found by an index")
def _token_labels(db: Database) -> None:
    # label: NULL for the tokens issued before (a listing shows them by their last four characters, as it always
    # did). The Users page shows each user's last login, the newest `login` row of the audit naming them.
    run_script(
        db,
        """
        ALTER TABLE user_tokens ADD COLUMN label TEXT;
        CREATE INDEX audit_events_target ON audit_events(kind, target, at)
        """,
    )


def run_script(db: Database, script: str) -> None:
    """Statement by statement: executescript() would COMMIT the migration's transaction early."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def migration_set() -> Migrations:
    """contentq's migrations as a sqlite-utils set, in number order (the order they are defined in may differ)."""
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(MIGRATION_SET)
    for m in sorted(MIGRATIONS, key=lambda m: m.number):
        migrations(name=m.key)(m.apply)
    return migrations


def _adopt_legacy_records(db: Database, migrations: Migrations) -> None:
    """A database migrated by the hand-written runner: its records move to `_sqlite_migrations` once."""
    if not db[LEGACY_TABLE].exists():
        return
    migrations.ensure_migrations_table(db)
    known = {m.name for m in applied(db)}
    rows = db.execute(f"SELECT number, applied_at FROM {LEGACY_TABLE}").fetchall()
    db[migrations.migrations_table].insert_all(  # type: ignore[union-attr]
        {"migration_set": MIGRATION_SET, "name": f"{number:04d}", "applied_at": applied_at}
        for number, applied_at in rows
        if f"{number:04d}" not in known
    )
    db[LEGACY_TABLE].drop()


def applied(db: Database) -> list[Migrations._AppliedMigration]:
    return migration_set().applied(db)


def up_to_date(conn: sqlite3.Connection) -> bool:
    """Whether every migration is recorded, in plain SQL: the usual open of a migrated database then needs no
    sqlite-utils, whose import (click, pluggy, numpy) costs a CLI command ~60 ms."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if LEGACY_TABLE in tables or "_sqlite_migrations" not in tables:
        return False
    done = {
        row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?", (MIGRATION_SET,))
    }
    return all(m.key in done for m in MIGRATIONS)


def apply_migrations(db: Database) -> list[Migration]:
    """Apply what is missing; returns the migrations applied now.

    All of it runs in one IMMEDIATE transaction (each migration in a savepoint of sqlite-utils' `atomic()`),
    so two processes opening a new database at once never both migrate it: the second waits, then finds
    nothing pending.
    """
    migrations = migration_set()
    if not migrations.pending(db) and not db[LEGACY_TABLE].exists():
        return []  # the usual open: a read, no write lock
    db.execute("BEGIN IMMEDIATE")
    try:
        _adopt_legacy_records(db, migrations)
        pending = {m.name for m in migrations.pending(db)}
        migrations.apply(db)
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return [m for m in sorted(MIGRATIONS, key=lambda m: m.number) if m.key in pending]


def migration_status(db: Database) -> list[dict[str, object]]:
    """Every migration with when it was applied (None: pending), for `contentq db migrate --list`."""
    done = {m.name: m.applied_at for m in applied(db)}
    done.update(_legacy_status(db))
    return [
        {"number": m.number, "name": m.name, "applied_at": done.get(m.key)}
        for m in sorted(MIGRATIONS, key=lambda m: m.number)
    ]


def _legacy_status(db: Database) -> dict[str, str]:
    """Records of a database not yet opened by this version (read-only: `--list` and doctor do not migrate)."""
    if not db[LEGACY_TABLE].exists():
        return {}
    return {f"{number:04d}": at for number, at in db.execute(f"SELECT number, applied_at FROM {LEGACY_TABLE}")}
