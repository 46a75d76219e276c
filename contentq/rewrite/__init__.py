"""Rewriting donor posts for the target channel: the LLM rewriter, the rule-based one, validation, usage.

`core.rewrite_post` is the entry point; `contentq.jobs.rewrite` runs it as the `rewrite` job.
"""
