"""Storage: every line of SQL parkchat runs lives in this package."""
