"""Tables (terminal, markdown, CSV) and plots."""
