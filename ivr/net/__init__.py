"""asyncio adapters: the only place with sockets and the clock."""
