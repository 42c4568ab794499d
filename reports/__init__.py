"""Self-contained HTML reports of campaigns (presentation only: nothing imports this)."""
