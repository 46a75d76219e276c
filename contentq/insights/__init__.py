"""Insights: what published posts achieved (docs/insights.md).

`fetch` takes samples of every recently published post's figures (views, forwards, replies, reactions per emoji)
and of each channel's subscribers; `series` reads a post's figures at a given age from its samples; `analysis`
turns the per-post figures into answers (donors, slots, rewrites, the week's best and worst); `report` reads
the store and the routes and calls it.
"""
