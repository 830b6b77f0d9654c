"""Tables (Markdown and text) and figures (matplotlib) from results only: `tables`, `figures`."""
