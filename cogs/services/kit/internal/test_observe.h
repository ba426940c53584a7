// Test helpers for what the services expose to operators: samples of a Prometheus text exposition,
// promtool's verdict on it, and the JSON log lines a process writes on stderr. Header-only, for the
// tests of cogs/services (kit, sim, compute); never linked into a service.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace cogs::services::kit::test_observe {

// The value of the sample `name` whose labels include `labels`, in a Prometheus text exposition;
// NaN if there is none (or more than one).
inline double SampleOf(const std::string& text, const std::string& name,
                       const std::map<std::string, std::string>& labels) {
    double found = std::nan("");
    int matches = 0;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#' || !line.starts_with(name)) {
            continue;
        }
        const size_t brace = line.find('{');
        const size_t space = line.rfind(' ');
        const size_t name_end = brace == std::string::npos ? space : brace;
        if (line.substr(0, name_end) != name) {
            continue;
        }
        std::map<std::string, std::string> have;
        if (brace != std::string::npos) {
            const std::string body = line.substr(brace + 1, line.rfind('}') - brace - 1);
            size_t at = 0;
            while (at < body.size()) {
                const size_t eq = body.find('=', at);
                const size_t close = body.find('"', eq + 2);
                have[body.substr(at, eq - at)] = body.substr(eq + 2, close - eq - 2);
                at = close + 2;  // past `",`
            }
        }
        bool all = true;
        for (const auto& [k, v] : labels) {
            auto it = have.find(k);
            all = all && it != have.end() && it->second == v;
        }
        if (all) {
            ++matches;
            found = std::stod(line.substr(space + 1));
        }
    }
    return matches == 1 ? found : std::nan("");
}

// Runs promtool (a dependency: scripts/install-deps) on a metrics text; "" if it finds nothing wrong.
inline std::string PromtoolProblems(const std::string& text) {
    char path[] = "/tmp/cogs-kit-metrics-XXXXXX";
    const int fd = ::mkstemp(path);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
    std::string out;
    FILE* p = ::popen(("promtool check metrics < " + std::string(path) + " 2>&1").c_str(), "r");
    char buf[4096];
    size_t n = 0;
    while (p != nullptr && (n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        out.append(buf, n);
    }
    const int status = p == nullptr ? -1 : ::pclose(p);
    ::unlink(path);
    if (status != 0) {
        return "promtool failed (" + std::to_string(status) + "): " + out;
    }
    return out;
}

// Everything written to file descriptor 2 (stderr, where the logs go) between construction and
// Stop(): what an operator sees of a process's logs.
class StderrCapture {
public:
    StderrCapture() {
        std::fflush(stderr);
        saved_ = ::dup(2);
        const int fd = ::open(path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
        ::dup2(fd, 2);
        ::close(fd);
    }
    ~StderrCapture() { Stop(); }
    std::string Stop() {
        if (saved_ >= 0) {
            std::fflush(stderr);
            ::dup2(saved_, 2);
            ::close(saved_);
            saved_ = -1;
        }
        std::ifstream in(path_);
        std::stringstream ss;
        ss << in.rdbuf();
        std::filesystem::remove(path_);
        return ss.str();
    }

private:
    std::string path_ =
        (std::filesystem::temp_directory_path() / ("cogs-kit-stderr-" + std::to_string(::getpid()) + ".log"))
            .string();
    int saved_ = -1;
};

// The JSON log lines of `text` whose message contains `needle`.
inline std::vector<boost::json::object> LogLines(const std::string& text, const std::string& needle) {
    std::vector<boost::json::object> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        boost::system::error_code ec;
        boost::json::value v = boost::json::parse(line, ec);
        if (!ec && v.is_object() && v.as_object().contains("msg") &&
            std::string(v.at("msg").as_string()).find(needle) != std::string::npos) {
            out.push_back(v.as_object());
        }
    }
    return out;
}

}  // namespace cogs::services::kit::test_observe
