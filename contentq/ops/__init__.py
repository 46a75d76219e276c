"""Operations: supervisor config, purge, stats, alerts, metrics, doctor and health, the demo."""
