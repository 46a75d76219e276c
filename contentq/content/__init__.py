"""Post content: Telegram HTML and entities, lengths, dedup, filters."""
