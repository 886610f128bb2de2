"""Reaching a cluster: what --cluster names (`auto`, host:port, local:N), whether anything
answers there, and joining it with Ray, each failure in one line."""

from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass

from ..errors import UserError
from .remote import first_line

NODE_RESOURCE = "visionperf_node"  # nodes so marked (ray start --resources) are the ones used
NAMESPACE = "visionperf"


@dataclass(frozen=True)
class Address:
    """What --cluster names: `auto` (the cluster this machine belongs to, or $RAY_ADDRESS), a
    Ray address (the head's host:port), or local:N. Not Ray Client (ray://): it relays every
    call through the head's client server, and a client outside the cluster's network cannot
    reach the nodes' streams, which carry the batches (README, "Beyond one server")."""

    text: str
    local_nodes: int = 0

    @property
    def is_local(self) -> bool:
        return self.local_nodes > 0


def parse_address(text: str) -> Address:
    text = (text or "").strip()
    if text.startswith("local:"):
        n = text[6:]
        if not n.isdigit() or not 1 <= int(n) <= 64:
            raise UserError(f"--cluster {text}: local:N starts N node processes on this machine, N from 1 to 64 "
                            "(e.g. local:2)")
        return Address(text, int(n))
    if not text:
        raise UserError("--cluster needs an address: auto, a Ray address such as 10.0.0.1:6379, or local:N")
    if text.startswith("ray://"):
        raise UserError(f"--cluster {text}: Ray Client relays every call through the head's client server, and "
                        "the driver must reach every node's stream: run visionperf on a machine of the cluster "
                        "(e.g. the head) with --cluster HEAD:6379 or auto")
    return Address(text)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--cluster runs on Ray, which is not installed: pip install 'visionperf[cluster]' "
                        "(or make install EXTRAS=cluster)") from None
    return ray


def reachable(text: str) -> str:
    """TEXT if something listens there (host:port); `auto` is left to Ray. Checked
    first so that an address nobody answers is one line at once, not Ray's minute of retries."""
    if text == "auto":
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--cluster {text}: not a Ray address: pass host:port (the head's GCS, e.g. "
                        "10.0.0.1:6379), auto, or local:N")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"--cluster {text}: no Ray cluster answers there ({e.strerror or e}): start one "
                        "(`ray start --head` on the head node), or check the address") from None
    return text


def join(ray, target: str, address: Address) -> None:
    """This process joined to the cluster at TARGET (Ray's driver, in Ray's words); one line if it cannot."""
    try:
        ray.init(address=target, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR,
                 include_dashboard=False if address.is_local else None, configure_logging=True)
    except ConnectionError as e:
        raise UserError(f"--cluster {address.text}: no Ray cluster found ({first_line(e)}): start one with "
                        "`ray start --head`, set RAY_ADDRESS, or pass local:N") from None
    except Exception as e:  # noqa: BLE001 (Ray raises RuntimeError for a version mismatch, and others)
        text = str(e)
        if "version" in text.lower() and "mismatch" in text.lower():
            raise UserError(f"--cluster {address.text}: {_version_mismatch(text)}: install the same Ray and "
                            "Python on the driver and every node") from None
        raise UserError(f"--cluster {address.text}: cannot join the cluster: {first_line(e)}") from None


def _version_mismatch(text: str) -> str:
    """Ray's multi-line version mismatch message, as one clause."""
    vers = re.findall(r"Ray:\s*([\w.+-]+)", text)
    pys = re.findall(r"Python:\s*([\w.+-]+)", text)
    if len(vers) >= 2:
        return (f"the cluster runs Ray {vers[0]}" + (f" (Python {pys[0]})" if pys else "")
                + f", this machine Ray {vers[1]}" + (f" (Python {pys[1]})" if len(pys) > 1 else ""))
    return "Ray version mismatch (" + " ".join(text.split())[:200] + ")"
