"""Wire codecs with no I/O: server-sent events, error shapes, the internal request type."""
