"""The MCP door: Alexandria's knowledge bases as Model Context Protocol tools and resources.

``server.AlexandriaMCP`` is the server (tools in ``tools`` and ``write_tools``, typed results in ``models``, text in
``render``, the caller's scope in ``scope``); ``http`` mounts it at ``/mcp`` in ``alexandria serve`` (Streamable
HTTP, stateless, bearer keys); ``stdio`` is ``alexandria mcp``, a stdio proxy to a running server's ``/mcp``."""
