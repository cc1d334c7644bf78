// Numeric rtnetlink constants from the Linux uapi (linux/netlink.h, rtnetlink.h, if_link.h,
// if_addr.h, neighbour.h). The netkit values are defined here because distribution headers predate
// netkit (values: reference/netkit-bpf.md §1.1).

export const NETLINK_ROUTE = 0;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

// nlmsghdr types and flags
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** Also send the requester the notification the change makes (RTM_NEWLINK: Linux >= 6.3). */
export const NLM_F_ECHO = 0x08;
// Flags on NLMSG_ERROR replies.
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

export const NLMSG_HDRLEN = 16;

// rtnetlink message types
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

// net_device flags
export const IFF_UP = 0x1;
export const IFF_LOWER_UP = 0x10000;

// Link attributes (IFLA_*)
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_TXQLEN = 13;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_NET_NS_FD = 28;
export const IFLA_EXT_MASK = 29;
export const IFLA_LINK_NETNSID = 37;
export const IFLA_GSO_MAX_SEGS = 40;
export const IFLA_NUM_TX_QUEUES = 31;
export const IFLA_NUM_RX_QUEUES = 32;
export const IFLA_GSO_MAX_SIZE = 41;
export const IFLA_MIN_MTU = 50;
export const IFLA_MAX_MTU = 51;
export const IFLA_GRO_MAX_SIZE = 58;
export const IFLA_TSO_MAX_SIZE = 59;
export const IFLA_TSO_MAX_SEGS = 60;
export const IFLA_GSO_IPV4_MAX_SIZE = 63;
export const IFLA_GRO_IPV4_MAX_SIZE = 64;

export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;

/** Skips the per-link statistics blocks in dumps: smaller replies, nothing we read is lost. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

export const VETH_INFO_PEER = 1;

// netkit (drivers/net/netkit.c, include/uapi/linux/if_link.h; kernel >= 6.7)
export const IFLA_NETKIT_PEER_INFO = 1;
export const IFLA_NETKIT_PRIMARY = 2;
export const IFLA_NETKIT_POLICY = 3;
export const IFLA_NETKIT_PEER_POLICY = 4;
export const IFLA_NETKIT_MODE = 5;
export const IFLA_NETKIT_SCRUB = 6; // 6.13+
export const IFLA_NETKIT_PEER_SCRUB = 7; // 6.13+
export const IFLA_NETKIT_HEADROOM = 8; // 6.14+
export const IFLA_NETKIT_TAILROOM = 9; // 6.14+

export const NETKIT_PASS = 0;
export const NETKIT_DROP = 2;
export const NETKIT_L2 = 0;
export const NETKIT_L3 = 1;
export const NETKIT_SCRUB_NONE = 0;
export const NETKIT_SCRUB_DEFAULT = 1;

// Address attributes and flags (if_addr.h)
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_FLAGS = 8;

export const IFA_F_NODAD = 0x02;
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_TENTATIVE = 0x40;
export const IFA_F_PERMANENT = 0x80;
export const IFA_F_NOPREFIXROUTE = 0x200;

// Route header values and attributes (rtnetlink.h)
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_SCOPE_NOWHERE = 255;

export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;

export const RTPROT_BOOT = 3;

export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;
export const RTN_BLACKHOLE = 6;
export const RTN_UNREACHABLE = 7;
export const RTN_PROHIBIT = 8;

export const RTNH_F_ONLINK = 0x4;
export const RTM_F_CLONED = 0x200;

export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_METRICS = 8;
export const RTA_TABLE = 15;

export const RTAX_MTU = 2;

// Neighbour attributes and states (neighbour.h)
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NDA_IFINDEX = 8;

export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;

export const NLA_F_NESTED = 0x8000;
