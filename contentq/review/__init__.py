"""Review: what a person does to a post — list, show, approve, reject, edit, schedule — for the CLI, the web panel
and the bot alike."""
