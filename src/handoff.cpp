#include "mproc/handoff.hpp"

#include <string>
#include <utility>
#include <vector>

namespace mproc::detail {
namespace {

constexpr std::string_view kPrefix = "mproc.handoff/1 ";
constexpr std::size_t kLongestMessage = 256;  // the prefix and any name fit; a longer message is not ours

std::string text_of(const std::vector<std::byte>& bytes) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

void send_handoff(FdConnection& connection, std::string_view name, int fd) {
    if (fd < 0)
        throw ValueError("send_object<" + std::string(name) +
                         ">: the object has no descriptor (a named object: open it by name; or a moved-from handle)");
    const std::string message = std::string(kPrefix) + std::string(name);
    connection.send_bytes(std::as_bytes(std::span(message.data(), message.size())));
    connection.send_handle(fd);
}

// The hand-off message and the descriptor after it, whatever name it carries.
static std::pair<std::string, UniqueFd> receive_any_handoff(FdConnection& connection, std::string_view who) {
    std::vector<std::byte> message;
    try {
        message = connection.recv_bytes(kLongestMessage);
    } catch (const SystemError& error) {
        if (error.error_number() != EMSGSIZE) throw;
        throw InvalidObject(std::string(who) + ": the peer sent a message of more than " +
                            std::to_string(kLongestMessage) + " bytes, not an object hand-off (" + error.what() + ")");
    }
    const std::string text = text_of(message);
    if (text.rfind(kPrefix, 0) != 0)
        throw InvalidObject(std::string(who) + ": the peer sent a message that is not an object hand-off (" +
                            std::to_string(text.size()) + " bytes; the message was consumed)");
    // Read the descriptor that follows in every case, so that a refused one is closed, not left in the stream.
    UniqueFd fd = connection.recv_handle();
    return {text.substr(kPrefix.size()), std::move(fd)};
}

UniqueFd receive_handoff(FdConnection& connection, std::string_view name) {
    const std::string who = "recv_object<" + std::string(name) + ">";
    auto [sent, fd] = receive_any_handoff(connection, who);
    if (sent != name)
        throw InvalidObject(who + ": the peer handed over a " + sent + ", expected a " + std::string(name) +
                            " (the descriptor was closed)");
    return std::move(fd);
}

PipeConnection receive_pipe_end_handoff(FdConnection& connection) {
    constexpr std::string_view who = "recv_object<pipe end>";
    auto [sent, fd] = receive_any_handoff(connection, who);
    const std::string_view name = HandoffName<PipeConnection>::value;
    if (sent.size() != name.size() + 2 || sent.compare(0, name.size(), name) != 0 || sent[name.size()] != ' ' ||
        (sent.back() != '0' && sent.back() != '1'))
        throw InvalidObject(std::string(who) + ": the peer handed over a " + sent +
                            ", expected a pipe end 0 or 1 (the descriptor was closed)");
    return PipeConnection::from_fd(fd.get(), sent.back() - '0');
}

}  // namespace mproc::detail
