"""Adding and removing an IPv4 address: through netlink, or with `ip addr` where
netlink cannot be used. The add op and the journal's undo both come here."""

from .errors import OpError, errname


def ip_error_code(message):
    """The errno name for a failed `ip addr add|del`, from its message."""
    if "exists" in message:
        return "EEXIST"
    if "not find device" in message or "does not exist" in message:
        return "ENODEV"
    if "not permitted" in message:
        return "EPERM"
    if "Cannot assign" in message:
        return "EADDRNOTAVAIL"
    return "EIO"


def ip_address(verb, address, prefix, device):
    """`ip addr VERB ADDRESS/PREFIX dev DEVICE` for VERB "add" or "del"; OpError when refused."""
    from . import netlink

    spec = "%s/%d" % (address, prefix)
    try:
        return (netlink.address_add if verb == "add" else netlink.address_del)(address, prefix, device)
    except netlink.Unavailable:
        pass
    except OSError as e:
        raise OpError(errname(e.errno), "ip addr %s %s dev %s: %s" % (verb, spec, device, e.strerror))
    import subprocess  # only without netlink: importing it is a share of the agent's start

    try:
        r = subprocess.run(["ip", "addr", verb, spec, "dev", device], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        raise OpError("ENOENT" if isinstance(e, FileNotFoundError) else "EIO",
                      "ip addr %s %s dev %s: %s" % (verb, spec, device, e))
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip()
        raise OpError(ip_error_code(msg), "ip addr %s %s dev %s: %s" % (verb, spec, device, msg))
