"""Sans-I/O RTP, G.711 and RFC 4733."""
