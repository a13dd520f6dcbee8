//! BSD errno values, with FreeBSD's numbering, returned by the socket layer.

/// An error number as FreeBSD's `<sys/errno.h>` defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(i32)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    EINTR = 4,
    EBADF = 9,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    EINVAL = 22,
    ENOSPC = 28,
    EPIPE = 32,
    /// Also `EAGAIN`.
    EWOULDBLOCK = 35,
    EINPROGRESS = 36,
    EALREADY = 37,
    ENOTSOCK = 38,
    EDESTADDRREQ = 39,
    EMSGSIZE = 40,
    ENOPROTOOPT = 42,
    EOPNOTSUPP = 45,
    EAFNOSUPPORT = 47,
    EADDRINUSE = 48,
    EADDRNOTAVAIL = 49,
    ENETUNREACH = 51,
    ECONNABORTED = 53,
    ECONNRESET = 54,
    ENOBUFS = 55,
    EISCONN = 56,
    ENOTCONN = 57,
    ESHUTDOWN = 58,
    ETIMEDOUT = 60,
    ECONNREFUSED = 61,
    EHOSTUNREACH = 65,
}

impl Errno {
    pub const EAGAIN: Errno = Errno::EWOULDBLOCK;

    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The symbolic name, as packetdrill scripts and `strerror` tables spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::EINTR => "EINTR",
            Errno::EBADF => "EBADF",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EINVAL => "EINVAL",
            Errno::ENOSPC => "ENOSPC",
            Errno::EPIPE => "EPIPE",
            Errno::EWOULDBLOCK => "EAGAIN",
            Errno::EINPROGRESS => "EINPROGRESS",
            Errno::EALREADY => "EALREADY",
            Errno::ENOTSOCK => "ENOTSOCK",
            Errno::EDESTADDRREQ => "EDESTADDRREQ",
            Errno::EMSGSIZE => "EMSGSIZE",
            Errno::ENOPROTOOPT => "ENOPROTOOPT",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EAFNOSUPPORT => "EAFNOSUPPORT",
            Errno::EADDRINUSE => "EADDRINUSE",
            Errno::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            Errno::ENETUNREACH => "ENETUNREACH",
            Errno::ECONNABORTED => "ECONNABORTED",
            Errno::ECONNRESET => "ECONNRESET",
            Errno::ENOBUFS => "ENOBUFS",
            Errno::EISCONN => "EISCONN",
            Errno::ENOTCONN => "ENOTCONN",
            Errno::ESHUTDOWN => "ESHUTDOWN",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ECONNREFUSED => "ECONNREFUSED",
            Errno::EHOSTUNREACH => "EHOSTUNREACH",
        }
    }

    /// Looks a symbolic name up (`EAGAIN` and `EWOULDBLOCK` both map to 35).
    pub fn from_name(name: &str) -> Option<Errno> {
        const ALL: [Errno; 33] = [
            Errno::EPERM,
            Errno::ENOENT,
            Errno::EINTR,
            Errno::EBADF,
            Errno::ENOMEM,
            Errno::EACCES,
            Errno::EFAULT,
            Errno::EBUSY,
            Errno::EEXIST,
            Errno::EINVAL,
            Errno::ENOSPC,
            Errno::EPIPE,
            Errno::EWOULDBLOCK,
            Errno::EINPROGRESS,
            Errno::EALREADY,
            Errno::ENOTSOCK,
            Errno::EDESTADDRREQ,
            Errno::EMSGSIZE,
            Errno::ENOPROTOOPT,
            Errno::EOPNOTSUPP,
            Errno::EAFNOSUPPORT,
            Errno::EADDRINUSE,
            Errno::EADDRNOTAVAIL,
            Errno::ENETUNREACH,
            Errno::ECONNABORTED,
            Errno::ECONNRESET,
            Errno::ENOBUFS,
            Errno::EISCONN,
            Errno::ENOTCONN,
            Errno::ESHUTDOWN,
            Errno::ETIMEDOUT,
            Errno::ECONNREFUSED,
            Errno::EHOSTUNREACH,
        ];
        if name == "EWOULDBLOCK" {
            return Some(Errno::EWOULDBLOCK);
        }
        ALL.iter().copied().find(|e| e.name() == name)
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
