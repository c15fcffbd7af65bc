"""cloudgate: run Claude inside your own cloud.

A gateway that speaks the Anthropic, Vertex AI and Bedrock wire formats, forwards to any of
them, and governs who may spend what; plus an emulator of all three for tests and demos.
"""

__version__ = "0.1.0"
