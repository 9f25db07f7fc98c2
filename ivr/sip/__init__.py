"""Sans-I/O SIP (RFC 3261) and SDP (RFC 3264)."""
