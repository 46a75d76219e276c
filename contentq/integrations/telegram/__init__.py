"""Telegram: the gateway Protocol, the Telethon implementation, login and the admin notifier backend."""
