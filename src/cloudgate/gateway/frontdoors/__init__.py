"""Front doors: one per wire format. Each decodes requests into `MessagesCall` and renders errors."""
