"""The harness runs offline: the telemetry of the native libraries it loads stays off for the whole process, and
``network_contacts`` reads an ``strace`` log for any contact with another host (tests/e2e/test_no_network.py).

Each of these libraries carries Microsoft's 1DS uploader (``https://mobile.events.data.microsoft.com``), on by
default on Linux, and reads its switches from the environment once, when it initializes:

- onnxruntime 1.31.0 (``libonnxruntime.so``, which onnxruntime-genai and Foundry Local load, and the copy linked into
  ``onnxruntime_pybind11_state``) and onnxruntime-genai 0.18.0 (``libonnxruntime-genai.so``, the harness's and the
  Foundry SDK's onnxruntime-genai-core): ``ORT_DISABLE_TELEMETRY`` (1, true, yes, on or y) or a CI variable turns it
  off entirely;
- foundry-local-sdk 2.2.1 (``libfoundry_local.so``): only a CI variable turns it off entirely.
  ``ORT_TELEMETRY_DISABLED`` and ``Configuration(disable_nonessential_telemetry=True)`` stop the non-essential
  events: "ProcessInfo still uploads", says its own log line.

A CI variable counts when its value is not empty, 0, false, no or off. ``disable_telemetry`` sets ``CI=true`` (unless
one already counts) and both opt-outs to 1 in ``os.environ``, which native code reads through ``getenv``; the worker
processes and every tool the harness starts inherit them. A user's value that leaves telemetry on (``CI=false``,
``ORT_DISABLE_TELEMETRY=0``) is overridden: a validation harness does not phone home. pytest reads ``CI`` too: it then
prints assertion diffs and summary lines whole.

Measured with strace on one onnxruntime-genai answer and one Foundry Local chat, held 40 s: with no switch, 26 DNS
queries from all three libraries, and a device id and event stores written to
``$XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime``; with ``CI=true`` only while Foundry's manager started (the
harness's earlier way), 18, from onnxruntime and onnxruntime-genai; with ``ORT_TELEMETRY_DISABLED=1`` alone, 26; with
``disable_telemetry``, no call at all and no store.
"""

from __future__ import annotations

import codecs
import ipaddress
import itertools
import os
import re
import struct
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

# The CI variables every one of the libraries above checks (the same list in each binary).
CI_VARIABLES = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
                "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI")
# ORT_DISABLE_TELEMETRY: onnxruntime and onnxruntime-genai; ORT_TELEMETRY_DISABLED: Foundry Local (and newer
# onnxruntime builds, which renamed the switch).
OPT_OUTS = ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")
OPT_OUT_VALUES = frozenset({"1", "true", "yes", "on", "y"})  # the strictest reading among the libraries
FALSY_CI_VALUES = frozenset({"", "0", "false", "no", "off"})


def telemetry_switches(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to set so that no library's telemetry uploads: the switches ``environ`` lacks, or holds with a
    value that leaves telemetry on. Empty when ``environ`` already keeps every library quiet."""
    changes = {}
    if all(environ.get(name, "").strip().lower() in FALSY_CI_VALUES for name in CI_VARIABLES):
        changes["CI"] = "true"
    for name in OPT_OUTS:
        if environ.get(name, "").strip().lower() not in OPT_OUT_VALUES:
            changes[name] = "1"
    return changes


def disable_telemetry(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Turn every telemetry switch off in ``environ`` (the process's environment by default) and return what changed.

    Call it before onnxruntime, onnxruntime-genai or the Foundry Local SDK initializes: they read the switches then,
    and never again. Calling it twice changes nothing the second time."""
    target: MutableMapping[str, str] = os.environ if environ is None else environ
    changes = telemetry_switches(target)
    target.update(changes)
    return changes


# -- the proof: an strace log of connect/sendto/sendmsg/sendmmsg (and writev) ---------------------------------------
DNS_PORT = 53
# Local sockets of services that resolve host names, and then ask the network: systemd-resolved (varlink) and Avahi
# (mDNS, nsswitch's mdns4_minimal) serve host names only, so any connect counts.
RESOLVER_SOCKETS = ("/run/systemd/resolve/", "/var/run/systemd/resolve/", "/var/run/avahi-daemon/",
                    "/run/avahi-daemon/")
# nscd serves users and groups too (every getpwuid asks it first): a connect counts once a host request goes through
# it. glibc's request header is (version 2, type, key length), int32 each; the host types are GETHOSTBYNAME(v6),
# GETHOSTBYADDR(v6), GETFDHST (maps its host cache) and GETAI.
NSCD_SOCKETS = ("/var/run/nscd/", "/run/nscd/")
NSCD_HOST_REQUESTS = frozenset({4, 5, 6, 7, 13, 14})
NSCD_VERSION = 2
NETWORK_CALLS = frozenset({"connect", "sendto", "sendmsg", "sendmmsg"})
_CALL = re.compile(r"\b(connect|sendto|sendmsg|sendmmsg|writev)\((\d+),")
_RESUMED = re.compile(r"<\.\.\. connect resumed>.*\)\s*=\s*(-?\d+)")
_RESULT = re.compile(r"\)\s*=\s*(-?\d+)[^=]*$")  # the call's result, at the end
_FAMILY = re.compile(r"sa_family=(AF_\w+)")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_IPV4 = re.compile(r'sin_addr=inet_addr\("([^"]*)"\)')
_IPV6 = re.compile(r'inet_pton\(AF_INET6,\s*"([^"]*)"')
_PATH = re.compile(r'sun_path=@?"((?:[^"\\]|\\.)*)"')
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class NetworkTrace:
    calls: int  # connect, sendto, sendmsg and sendmmsg calls in the log
    contacts: tuple[str, ...]  # each call that reaches another host or a name service: why, then the log line


def _is_local(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # strace could not decode it: count it as remote
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _contact(address: str) -> str:
    """Why one decoded socket address (the text from one ``sa_family=`` on) leaves the machine; empty if it does not."""
    family = _FAMILY.match(address)
    if family is None:
        return ""
    if family.group(1) in ("AF_INET", "AF_INET6"):
        port_match = _PORT.search(address)
        port = int(port_match.group(1)) if port_match else None
        ip_match = _IPV4.search(address) or _IPV6.search(address)
        ip = ip_match.group(1) if ip_match else "?"
        if port == DNS_PORT:
            return f"DNS query to {ip}:{port}"
        return "" if _is_local(ip) else f"contact with {ip}:{port}"
    if family.group(1) == "AF_UNIX":
        path = _PATH.search(address)
        if path and path.group(1).startswith(RESOLVER_SOCKETS):
            return f"name lookup through {path.group(1)}"
    return ""  # AF_NETLINK (the kernel's routing tables), AF_UNSPEC (a disconnect), other local sockets


def _nscd_request(line: str) -> int | None:
    """The request type of the glibc nscd header in the first string a send or writev line shows, if it is one."""
    text = _STRING.search(line)
    if text is None:
        return None
    try:
        data = codecs.escape_decode(text.group(1).encode("ascii", "backslashreplace"))[0]
    except ValueError:
        return None
    if len(data) < 12:
        return None
    version, request, _ = struct.unpack("<iii", data[:12])
    return request if version == NSCD_VERSION else None


def network_contacts(log: str) -> NetworkTrace:
    """Read an ``strace -f -e trace=connect,sendto,sendmsg,sendmmsg,writev`` log: a contact is a socket address on
    another host (not loopback, any port), any address on port 53 (DNS, the loopback stub resolver too: it asks the
    network next), a host resolver's local socket, or a host request sent to nscd. Other AF_UNIX sockets, loopback and
    the netlink queries of getaddrinfo are fine."""
    calls, contacts = 0, list[str]()
    nscd: set[tuple[str, str]] = set()  # (pid, fd) of the sockets connected to nscd
    pending: dict[str, str] = {}  # pid -> fd of an nscd connect strace shows <unfinished ...>
    for line in log.splitlines():
        pid = line.split(maxsplit=1)[0] if line[:1].isdigit() else ""
        resumed = _RESUMED.search(line)
        if resumed and pid in pending:
            fd = pending.pop(pid)
            if resumed.group(1) == "0":
                nscd.add((pid, fd))
        call = _CALL.search(line)
        if call is None:
            continue
        name, fd = call.groups()
        calls += name in NETWORK_CALLS
        if name == "connect":
            nscd.discard((pid, fd))  # the descriptor was closed and reused
            path = _PATH.search(line)
            if path and path.group(1).startswith(NSCD_SOCKETS):
                result = _RESULT.search(line)
                if "<unfinished" in line:
                    pending[pid] = fd
                elif result and result.group(1) == "0":
                    nscd.add((pid, fd))
        elif (pid, fd) in nscd and _nscd_request(line) in NSCD_HOST_REQUESTS:
            contacts.append(f"host name lookup through nscd: {line.strip()}")
            continue
        starts = [match.start() for match in _FAMILY.finditer(line)]
        for start, end in itertools.pairwise([*starts, len(line)]):
            reason = _contact(line[start:end])
            if reason:
                contacts.append(f"{reason}: {line.strip()}")
                break
    return NetworkTrace(calls, tuple(contacts))
