"""The admin bot (`contentq bot`, docs/bot.md): a front end over the same cores as the CLI and the panel.

`signing` signs the buttons' callback data, `cards` shows a post as it will be published with its buttons,
`core.AdminBot` handles what arrives (presses, replies, commands) and does the periodic work (new cards, cards
of posts moved elsewhere, alerts), `commands` answers the slash commands, `serve` is the long-running loop.
"""
