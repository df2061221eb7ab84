#include "mproc/listener.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "deadline.hpp"
#include "framing.hpp"

namespace mproc {

namespace detail {

namespace {

namespace framing = detail::framing;

constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr std::string_view kWelcome = "#WELCOME#";
constexpr std::string_view kFailure = "#FAILURE#";
// CPython 3.12: random bytes after the "{digest}" prefix (MESSAGE_LENGTH); 3.11: the bare challenge length.
constexpr std::size_t kModernChallengeBytes = 40;
constexpr std::size_t kLegacyChallengeBytes = 20;  // _MD5ONLY_MESSAGE_LENGTH
constexpr std::size_t kMd5DigestBytes = 16;         // _MD5_DIGEST_LEN
constexpr std::size_t kLongestDigestName = 8;       // _MAX_DIGEST_LEN: "sha3_256", "sha3_384"
constexpr std::size_t kSmallestFrameBound = 64;     // room for "#CHALLENGE#{sha3_384}" + 40 bytes

// The digests CPython 3.12 accepts (_ALLOWED_DIGESTS), with OpenSSL's names for them.
struct DigestName {
    std::string_view python;
    const char* openssl;
};
constexpr std::array<DigestName, 5> kAllowedDigests{{
    {"md5", "MD5"},
    {"sha256", "SHA256"},
    {"sha384", "SHA384"},
    {"sha3_256", "SHA3-256"},
    {"sha3_384", "SHA3-384"},
}};

const DigestName* find_digest(std::string_view python_name) {
    for (const DigestName& digest : kAllowedDigests)
        if (digest.python == python_name) return &digest;
    return nullptr;
}

std::string printable(std::string_view bytes, std::size_t limit = 48) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string shown;
    for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
        const auto byte = static_cast<unsigned char>(bytes[i]);
        if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
            shown += static_cast<char>(byte);
        } else {
            shown += "\\x";
            shown += kHex[byte >> 4];
            shown += kHex[byte & 0xf];
        }
    }
    if (bytes.size() > limit) shown += "...";
    return shown;
}

// HMAC(key, message) with the digest `python_name`; AuthenticationError when OpenSSL lacks it (FIPS mode
// without MD5).
std::string hmac_of(std::string_view who, const DigestName& digest, std::string_view key, std::string_view message) {
    const EVP_MD* algorithm = EVP_get_digestbyname(digest.openssl);
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int mac_size = 0;
    // An empty key is legal (Client with authkey b""): HMAC() wants a non-null pointer even for length 0.
    static const unsigned char kNoKey = 0;
    const void* key_bytes = key.empty() ? static_cast<const void*>(&kNoKey) : key.data();
    if (algorithm == nullptr ||
        HMAC(algorithm, key_bytes, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
             message.size(), mac.data(), &mac_size) == nullptr)
        throw AuthenticationError(std::string(who) + ": HMAC-" + std::string(digest.python) +
                                  " is not available from OpenSSL");
    return std::string(reinterpret_cast<const char*>(mac.data()), mac_size);
}

// Handshake frames on a stream socket: exactly one frame read or written at a time, each within the
// deadline. MSG_DONTWAIT and MSG_NOSIGNAL on every call, so a blocking socket never blocks past the deadline
// and a closed peer is EPIPE, not SIGPIPE; the socket's own flags are left alone.
class HandshakeChannel {
public:
    HandshakeChannel(int fd, const Deadline& deadline, std::size_t max_message_size, std::string who)
        : fd_(fd), deadline_(deadline), max_message_size_(max_message_size), who_(std::move(who)) {}

    void send(std::string_view message) {
        const framing::EncodedHeader header = framing::encode_header(message.size());
        std::string frame(reinterpret_cast<const char*>(header.bytes.data()), header.size);
        frame.append(message);
        std::size_t sent = 0;
        while (sent < frame.size()) {
            const ssize_t written = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (written > 0) {
                sent += static_cast<std::size_t>(written);
            } else if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                wait_for(POLLOUT, "sending");
            } else if (written < 0 && errno == EINTR) {
                continue;
            } else {
                fail_io("sending", errno);
            }
        }
    }

    // One whole frame of at most max_message_size bytes; reads nothing past it.
    std::string receive(std::string_view expecting) {
        std::array<std::byte, framing::kLongHeaderSize> header{};
        read_exactly(header.data(), framing::kShortHeaderSize, expecting, "header");
        framing::HeaderParse parsed = framing::parse_header({header.data(), framing::kShortHeaderSize});
        if (parsed.status == framing::HeaderStatus::incomplete) {
            read_exactly(header.data() + framing::kShortHeaderSize, framing::kLongHeaderSize - framing::kShortHeaderSize,
                         expecting, "long header");
            parsed = framing::parse_header({header.data(), framing::kLongHeaderSize});
        }
        if (parsed.status != framing::HeaderStatus::complete)
            throw AuthenticationError(who_ + ": malformed frame header while expecting " + std::string(expecting));
        if (parsed.message_size > max_message_size_)
            throw AuthenticationError(who_ + ": frame of " + std::to_string(parsed.message_size) +
                                      " bytes while expecting " + std::string(expecting) + " (the handshake allows " +
                                      std::to_string(max_message_size_) + ")");
        std::string body(static_cast<std::size_t>(parsed.message_size), '\0');
        read_exactly(body.data(), body.size(), expecting, "body");
        return body;
    }

    const std::string& who() const noexcept { return who_; }

private:
    void read_exactly(void* into, std::size_t size, std::string_view expecting, const char* part) {
        auto* at = static_cast<char*>(into);
        std::size_t filled = 0;
        while (filled < size) {
            // MSG_DONTWAIT: the fd may be blocking; the wait is the deadline's ppoll below.
            const ssize_t got = ::recv(fd_, at + filled, size - filled, MSG_DONTWAIT);
            if (got > 0) {
                filled += static_cast<std::size_t>(got);
            } else if (got == 0) {
                throw AuthenticationError(who_ + ": the peer closed the connection while sending " +
                                          std::string(expecting) + " (" + std::to_string(filled) + " of " +
                                          std::to_string(size) + " " + part + " bytes came)");
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_for(POLLIN, "receiving " + std::string(expecting));
            } else if (errno != EINTR) {
                fail_io("receiving " + std::string(expecting), errno);
            }
        }
    }

    void wait_for(short events, const std::string& doing) {
        for (;;) {
            if (deadline_.passed())
                throw AuthenticationError(who_ + ": the handshake did not finish within " +
                                          std::to_string(deadline_.timeout().count() / 1'000'000) + " ms (stalled " +
                                          doing + ")");
            pollfd entry{fd_, events, 0};
            const timespec left = deadline_.remaining_timespec();
            const int ready = ::ppoll(&entry, 1, &left, nullptr);
            if (ready > 0) return;
            if (ready < 0 && errno != EINTR) fail_io("waiting for the peer", errno);
        }
    }

    [[noreturn]] void fail_io(const std::string& doing, int error_number) {
        if (error_number == EPIPE || error_number == ECONNRESET)
            throw AuthenticationError(who_ + ": the peer closed the connection (" + std::strerror(error_number) +
                                      ") while " + doing);
        throw_system_error(who_ + ": " + doing, error_number);
    }

    int fd_;
    const Deadline& deadline_;
    std::size_t max_message_size_;
    std::string who_;
};

void check_options(const HandshakeOptions& options, const char* who) {
    if (options.max_message_size < kSmallestFrameBound)
        throw ValueError(std::string(who) + ": max_message_size " + std::to_string(options.max_message_size) +
                         " is below " + std::to_string(kSmallestFrameBound) + ", too small for a challenge");
    if (!options.challenge_digest.empty() && find_digest(options.challenge_digest) == nullptr)
        throw ValueError(std::string(who) + ": challenge_digest '" + options.challenge_digest +
                         "' is none of md5, sha256, sha384, sha3_256, sha3_384 (or empty for the legacy challenge)");
}

// CPython 3.12's _get_digest_name_and_payload: a 16- or 20-byte message is legacy (bare MD5, nullptr);
// otherwise "{name}" with an allowed name must open it.
struct DigestAndPayload {
    const DigestName* digest;  // nullptr: legacy
    std::string_view payload;
};

DigestAndPayload split_digest(std::string_view message, std::string_view who, std::string_view what) {
    if (message.size() == kLegacyChallengeBytes || message.size() == kMd5DigestBytes) return {nullptr, message};
    if (!message.empty() && message.front() == '{') {
        const std::size_t curly = message.substr(0, kLongestDigestName + 2).find('}', 1);
        if (curly != std::string_view::npos) {
            if (const DigestName* digest = find_digest(message.substr(1, curly - 1)))
                return {digest, message.substr(curly + 1)};
        }
    }
    throw AuthenticationError(std::string(who) + ": " + std::string(what) + " of " + std::to_string(message.size()) +
                              " bytes has neither a legacy length nor a known {digest} prefix: '" +
                              printable(message) + "'");
}

void deliver(HandshakeChannel& channel, std::string_view authkey, const HandshakeOptions& options) {
    const bool legacy = options.challenge_digest.empty();
    std::string challenge = legacy ? std::string() : "{" + options.challenge_digest + "}";
    const std::size_t random_bytes = legacy ? kLegacyChallengeBytes : kModernChallengeBytes;
    const std::size_t prefix = challenge.size();
    challenge.resize(prefix + random_bytes);
    std::size_t filled = 0;
    while (filled < random_bytes) {
        const ssize_t got = ::getrandom(challenge.data() + prefix + filled, random_bytes - filled, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) throw_system_error(channel.who() + ": getrandom");
        filled += static_cast<std::size_t>(got);
    }
    channel.send(std::string(kChallenge) + challenge);

    const std::string response = channel.receive("the response to our challenge");
    const DigestAndPayload split = split_digest(response, channel.who(), "the response to our challenge");
    const DigestName& digest = split.digest != nullptr ? *split.digest : *find_digest("md5");
    const std::string expected = hmac_of(channel.who(), digest, authkey, challenge);
    // Constant time: how much of the MAC matched must not show in how long the comparison took.
    const bool matches = expected.size() == split.payload.size() &&
                         CRYPTO_memcmp(expected.data(), split.payload.data(), expected.size()) == 0;
    if (!matches) {
        try {
            channel.send(kFailure);
        } catch (const Error&) {
            // The peer may be gone already; the verdict stands either way.
        }
        throw AuthenticationError(channel.who() + ": the peer's HMAC-" + std::string(digest.python) +
                                  " was wrong (the authkeys differ)");
    }
    channel.send(kWelcome);
}

void answer(HandshakeChannel& channel, std::string_view authkey) {
    const std::string message = channel.receive("a challenge");
    if (message.size() < kChallenge.size() || std::string_view(message).substr(0, kChallenge.size()) != kChallenge)
        throw AuthenticationError(channel.who() + ": protocol error, expected a challenge, got '" + printable(message) +
                                  "'");
    const std::string_view challenge = std::string_view(message).substr(kChallenge.size());
    if (challenge.size() < kLegacyChallengeBytes)
        throw AuthenticationError(channel.who() + ": challenge too short: " + std::to_string(challenge.size()) +
                                  " bytes");
    const DigestAndPayload split = split_digest(challenge, channel.who(), "the challenge");
    if (split.digest == nullptr) {
        channel.send(hmac_of(channel.who(), *find_digest("md5"), authkey, challenge));
    } else {
        channel.send("{" + std::string(split.digest->python) + "}" +
                     hmac_of(channel.who(), *split.digest, authkey, challenge));
    }
    const std::string verdict = channel.receive("the verdict on our response");
    if (verdict != kWelcome)
        throw AuthenticationError(channel.who() + ": the peer rejected our response (the authkeys differ): '" +
                                  printable(verdict) + "'");
}

std::string describe_fd(int fd) { return "handshake on fd " + std::to_string(fd); }

}  // namespace

// Both halves in the order of a Listener (deliver first) or a Client (answer first), within one deadline.
void run_handshake(int fd, bool listener_side, std::string_view authkey, const HandshakeOptions& options,
                   const Deadline& deadline, const std::string& who) {
    check_options(options, who.c_str());
    HandshakeChannel channel(fd, deadline, options.max_message_size, who);
    if (listener_side) {
        deliver(channel, authkey, options);
        answer(channel, authkey);
    } else {
        answer(channel, authkey);
        deliver(channel, authkey, options);
    }
}

}  // namespace detail

void deliver_challenge(int fd, std::string_view authkey, const HandshakeOptions& options) {
    const std::string who = detail::describe_fd(fd);
    detail::check_options(options, who.c_str());
    const detail::Deadline deadline = detail::Deadline::after(options.timeout);
    detail::HandshakeChannel channel(fd, deadline, options.max_message_size, who);
    detail::deliver(channel, authkey, options);
}

void answer_challenge(int fd, std::string_view authkey, const HandshakeOptions& options) {
    const std::string who = detail::describe_fd(fd);
    detail::check_options(options, who.c_str());
    const detail::Deadline deadline = detail::Deadline::after(options.timeout);
    detail::HandshakeChannel channel(fd, deadline, options.max_message_size, who);
    detail::answer(channel, authkey);
}

// ---- addresses ----

SocketAddress SocketAddress::unix_socket(std::string_view address) {
    if (!address.empty() && address.front() == '\0')
        return SocketAddress(Family::unix_abstract, std::string(address.substr(1)), 0);
    return SocketAddress(Family::unix_path, std::string(address), 0);
}

SocketAddress SocketAddress::tcp(std::string host, std::uint16_t port) {
    return SocketAddress(Family::tcp, std::move(host), port);
}

std::string SocketAddress::to_string() const {
    switch (family_) {
        case Family::unix_path: return name_;
        case Family::unix_abstract: return "@" + detail::printable(name_, 108);
        case Family::tcp:
            if (name_.find(':') != std::string::npos) return "[" + name_ + "]:" + std::to_string(port_);
            return name_ + ":" + std::to_string(port_);
    }
    return name_;
}

namespace {

class OwnedFd {
public:
    explicit OwnedFd(int fd) : fd_(fd) {}
    OwnedFd(const OwnedFd&) = delete;
    OwnedFd& operator=(const OwnedFd&) = delete;
    ~OwnedFd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_;
};

struct ResolvedAddress {
    sockaddr_storage storage{};
    socklen_t size = 0;
    int family = AF_UNIX;
};

ResolvedAddress unix_sockaddr(const SocketAddress& address, const std::string& who) {
    ResolvedAddress resolved;
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    const bool abstract = address.family() == SocketAddress::Family::unix_abstract;
    const std::string& name = address.name();
    if (!abstract && name.empty()) throw ValueError(who + ": an empty AF_UNIX path");
    if (!abstract && name.find('\0') != std::string::npos)
        throw ValueError(who + ": an AF_UNIX path holds a NUL byte past its start");
    // A path needs its terminating NUL; an abstract name uses every byte after its leading NUL.
    const std::size_t room = sizeof(un.sun_path) - 1;
    if (name.size() > room)
        throw ValueError(who + ": the AF_UNIX name is " + std::to_string(name.size()) + " bytes, at most " +
                         std::to_string(room) + " fit");
    std::memcpy(un.sun_path + (abstract ? 1 : 0), name.data(), name.size());
    resolved.size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
    std::memcpy(&resolved.storage, &un, sizeof(un));
    return resolved;
}

std::vector<ResolvedAddress> resolve(const SocketAddress& address, bool passive, const std::string& who) {
    if (address.family() != SocketAddress::Family::tcp) return {unix_sockaddr(address, who)};
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    addrinfo* found = nullptr;
    const std::string port = std::to_string(address.port());
    const int status = ::getaddrinfo(address.name().empty() ? nullptr : address.name().c_str(), port.c_str(), &hints,
                                     &found);
    if (status != 0)
        throw ValueError(who + ": cannot resolve host '" + address.name() + "': " + ::gai_strerror(status));
    std::vector<ResolvedAddress> all;
    for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
        if (entry->ai_addrlen > sizeof(sockaddr_storage)) continue;
        ResolvedAddress resolved;
        std::memcpy(&resolved.storage, entry->ai_addr, entry->ai_addrlen);
        resolved.size = entry->ai_addrlen;
        resolved.family = entry->ai_family;
        all.push_back(resolved);
    }
    ::freeaddrinfo(found);
    if (all.empty()) throw ValueError(who + ": host '" + address.name() + "' has no stream address");
    return all;
}

// The address a socket is bound to, numeric.
SocketAddress bound_address(int fd, const SocketAddress& requested, const std::string& who) {
    if (requested.family() != SocketAddress::Family::tcp) return requested;
    sockaddr_storage storage{};
    socklen_t size = sizeof(storage);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &size) < 0) throw_system_error(who + ": getsockname");
    char host[INET6_ADDRSTRLEN] = {};
    std::uint16_t port = 0;
    if (storage.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    } else {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(&storage);
        ::inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        port = ntohs(in4->sin_port);
    }
    return SocketAddress::tcp(host, port);
}

void set_blocking(int fd, bool blocking, const std::string& who) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) throw_system_error(who + ": fcntl(F_GETFL)");
    const int wanted = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
    if (wanted != flags && ::fcntl(fd, F_SETFL, wanted) < 0) throw_system_error(who + ": fcntl(F_SETFL)");
}

// The fd of an authenticated (or unauthenticated, without authkey) socket, as an FdConnection in blocking mode.
FdConnection adopt(OwnedFd& fd, bool tcp, const std::string& who) {
    set_blocking(fd.get(), true, who);
    if (tcp) {
        const int one = 1;
        if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
            throw_system_error(who + ": setsockopt(TCP_NODELAY)");
    }
    FdConnection connection = FdConnection::from_fd(fd.get());
    fd.release();
    return connection;
}

}  // namespace

// ---- Listener ----

Listener::Listener(const SocketAddress& address, int backlog, std::optional<std::string> authkey,
                   HandshakeOptions options)
    : address_(address), authkey_(std::move(authkey)), options_(std::move(options)) {
    const std::string who = "listener " + address.to_string();
    detail::check_options(options_, who.c_str());
    if (backlog < 0) throw ValueError(who + ": backlog " + std::to_string(backlog) + " is negative");
    const ResolvedAddress resolved = resolve(address, true, who).front();
    OwnedFd fd(::socket(resolved.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) throw_system_error(who + ": socket");
    const int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        throw_system_error(who + ": setsockopt(SO_REUSEADDR)");
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&resolved.storage), resolved.size) < 0)
        throw_system_error(who + ": bind");
    remove_path_ = address.family() == SocketAddress::Family::unix_path;
    bound_by_pid_ = ::getpid();
    if (::listen(fd.get(), backlog) < 0) {
        const int error_number = errno;
        if (remove_path_) ::unlink(address.name().c_str());
        throw_system_error(who + ": listen", error_number);
    }
    address_ = bound_address(fd.get(), address, who);
    fd_ = fd.release();
}

Listener::Listener(Listener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), address_(std::move(other.address_)), authkey_(std::move(other.authkey_)),
      options_(std::move(other.options_)), remove_path_(std::exchange(other.remove_path_, false)),
      bound_by_pid_(other.bound_by_pid_) {}

Listener& Listener::operator=(Listener&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        address_ = std::move(other.address_);
        authkey_ = std::move(other.authkey_);
        options_ = std::move(other.options_);
        remove_path_ = std::exchange(other.remove_path_, false);
        bound_by_pid_ = other.bound_by_pid_;
    }
    return *this;
}

Listener::~Listener() { close(); }

void Listener::close() noexcept {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    if (remove_path_ && bound_by_pid_ == ::getpid()) ::unlink(address_.name().c_str());
    remove_path_ = false;
}

int Listener::fileno() const {
    if (fd_ < 0) throw StateError("listener " + address_.to_string() + ": fileno: the listener is closed");
    return fd_;
}

FdConnection Listener::accept() { return *accept_within(std::nullopt); }

std::optional<FdConnection> Listener::accept(std::chrono::nanoseconds timeout) { return accept_within(timeout); }

std::optional<FdConnection> Listener::accept_within(std::optional<std::chrono::nanoseconds> timeout) {
    const std::string who = "listener " + address_.to_string();
    if (fd_ < 0) throw StateError(who + ": accept: the listener is closed");
    // No timeout: a deadline that never passes, and ppoll without a limit.
    const bool bounded = timeout.has_value();
    const detail::Deadline deadline = detail::Deadline::after(timeout.value_or(std::chrono::nanoseconds::max()));
    for (;;) {
        pollfd entry{fd_, POLLIN, 0};
        const timespec left = deadline.remaining_timespec();
        const int ready = ::ppoll(&entry, 1, bounded ? &left : nullptr, nullptr);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) throw_system_error(who + ": accept: ppoll");
        if (ready == 0) return std::nullopt;
        // Non-blocking: the handshake waits with ppoll against its own deadline; another process sharing this
        // socket may have taken the client meanwhile (EAGAIN).
        OwnedFd client(::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (client.get() < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
                if (bounded && deadline.passed()) return std::nullopt;
                continue;
            }
            throw_system_error(who + ": accept4");
        }
        const std::string client_who = who + ": client fd " + std::to_string(client.get());
        // Python's Listener: `if self._authkey:`; an empty key means no handshake.
        if (authkey_ && !authkey_->empty()) {
            const detail::Deadline handshake_deadline = detail::Deadline::after(options_.timeout);
            detail::run_handshake(client.get(), true, *authkey_, options_, handshake_deadline, client_who);
        }
        return adopt(client, address_.family() == SocketAddress::Family::tcp, client_who);
    }
}

// ---- Client ----

namespace {

// Connects fd to `target`, within the deadline when there is one.
void connect_within(int fd, const ResolvedAddress& target, bool bounded, const detail::Deadline& deadline,
                    const std::string& who) {
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&target.storage), target.size) == 0) return;
    // EAGAIN: an AF_UNIX listener's backlog is full; nothing is in progress (the caller retries).
    if (errno != EINPROGRESS && errno != EINTR) throw_system_error(who + ": connect");
    for (;;) {
        pollfd entry{fd, POLLOUT, 0};
        const timespec left = deadline.remaining_timespec();
        const int ready = ::ppoll(&entry, 1, bounded ? &left : nullptr, nullptr);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) throw_system_error(who + ": connect: ppoll");
        if (ready == 0) throw_system_error(who + ": connect", ETIMEDOUT);
        int error_number = 0;
        socklen_t size = sizeof(error_number);
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error_number, &size) < 0)
            throw_system_error(who + ": getsockopt(SO_ERROR)");
        if (error_number != 0) throw_system_error(who + ": connect", error_number);
        return;
    }
}

}  // namespace

FdConnection Client(const SocketAddress& address, std::optional<std::string> authkey,
                    std::optional<std::chrono::nanoseconds> timeout, HandshakeOptions options) {
    const std::string who = "client of " + address.to_string();
    detail::check_options(options, who.c_str());
    if (address.family() == SocketAddress::Family::tcp && address.port() == 0)
        throw ValueError(who + ": port 0 names no listener");
    const bool bounded = timeout.has_value();
    const detail::Deadline deadline = detail::Deadline::after(timeout.value_or(std::chrono::nanoseconds::max()));
    const std::vector<ResolvedAddress> targets = resolve(address, false, who);
    std::optional<SystemError> last_error;
    for (const ResolvedAddress& target : targets) {
        // Non-blocking for a connect and handshake bounded by the deadline (AF_UNIX connects complete or
        // fail at once, EAGAIN when the backlog is full: then it is retried until the deadline).
        OwnedFd fd(::socket(target.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (fd.get() < 0) throw_system_error(who + ": socket");
        try {
            for (;;) {
                try {
                    connect_within(fd.get(), target, bounded, deadline, who);
                    break;
                } catch (const SystemError& error) {
                    // A full AF_UNIX backlog: wait a little and retry while time is left.
                    if (error.error_number() != EAGAIN || (bounded && deadline.passed())) throw;
                    ::usleep(1000);
                }
            }
        } catch (const SystemError& error) {
            last_error = error;
            continue;
        }
        if (authkey) {
            const detail::Deadline handshake_deadline = bounded ? deadline : detail::Deadline::after(options.timeout);
            detail::run_handshake(fd.get(), false, *authkey, options, handshake_deadline, who);
        }
        return adopt(fd, address.family() == SocketAddress::Family::tcp, who);
    }
    throw *last_error;
}

}  // namespace mproc
