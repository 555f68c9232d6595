"""VLM teachers: prompts, the red-path overlay, answer validation, the annotate CLI."""
