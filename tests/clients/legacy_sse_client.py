"""The Python `mcp` client over the legacy HTTP+SSE transport (protocol 2024-11-05).

Usage: legacy_sse_client.py SSE_URL TOKEN REPO_ID OTHER_REPO_ID
Lists tools, reads a file of REPO_ID, and checks that OTHER_REPO_ID is refused.
"""

import asyncio
import sys

from mcp.client.session import ClientSession
from mcp.client.sse import sse_client


def text_of(result) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def main(url: str, token: str, repo: str, other: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with sse_client(url, headers=headers) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert repo in (init.instructions or ""), init.instructions
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            assert "read_file" in tools and "create_scoped_token" not in tools, tools
            result = await session.call_tool("read_file", {"repo_id": repo, "path": "retry.py"})
            assert not result.is_error, text_of(result)
            assert "return 2 ** n" in text_of(result), text_of(result)
            refused = await session.call_tool("read_file", {"repo_id": other, "path": "x"})
            assert refused.is_error and "outside" in text_of(refused), text_of(refused)
    print(f"legacy SSE: {len(tools)} tools listed, file read, other repo refused")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
