"""Installing the ruleset with the `nft` binary, looked up once.

nft reads the whole script from stdin and applies it as one transaction: either all
of it lands or none does, and its stderr says which line it refused.
"""

from __future__ import annotations

import shutil

import trio

from gstacks_agent.networks.errors import NftablesMissing, RulesetRejected
from gstacks_agent.networks.names import NFT_TABLE

NFT_TIMEOUT_S = 10.0


class Nftables:
    """The nft binary of this host."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    @classmethod
    def locate(cls) -> Nftables:
        binary = shutil.which("nft")
        if binary is None:
            raise NftablesMissing(
                "nft is missing, so network policies cannot be enforced; "
                "install it with 'apt-get install nftables'"
            )
        return cls(binary)

    async def apply(self, script: str) -> None:
        """Run `script` as one transaction; RulesetRejected if nft refuses it."""
        with trio.fail_after(NFT_TIMEOUT_S):
            result = await trio.run_process(
                [self.binary, "-f", "-"],
                stdin=script.encode(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        if result.returncode != 0:
            raise RulesetRejected(
                "nft refused the network ruleset: "
                + result.stderr.decode(errors="replace").strip()[:2000]
            )

    async def table_text(self) -> str:
        """Our table as nft lists it; empty if it is not installed."""
        with trio.fail_after(NFT_TIMEOUT_S):
            result = await trio.run_process(
                [self.binary, "list", "table", "inet", NFT_TABLE],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        return result.stdout.decode(errors="replace") if result.returncode == 0 else ""
