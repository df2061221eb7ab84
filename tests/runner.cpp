// tests/runner.cpp — main() of every test binary: `NAME_test SUITE [FILTER]` runs the fixtures registered
// under SUITE ("unit", "stress" or "crash") whose test names contain FILTER (ThreadSanitizer builds pass
// "Threads" to run the thread variants only).
// Exit status: 1 when any test failed or none ran; else 77 (Meson's skip) when any test skipped; else 0.
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include <cppunit/CompilerOutputter.h>
#include <cppunit/Protector.h>
#include <cppunit/TestFailure.h>
#include <cppunit/TestListener.h>
#include <cppunit/TestResult.h>
#include <cppunit/TestResultCollector.h>
#include <cppunit/TestRunner.h>
#include <cppunit/extensions/TestFactoryRegistry.h>

#include "harness.hpp"
#include "mproc/context.hpp"

namespace {

struct SkipLedger {
    std::string current_test;
    std::map<std::string, std::string> reasons;
};

// Innermost protector: turns MPROC_SKIP into a recorded skip instead of an error.
class SkipProtector : public CppUnit::Protector {
public:
    explicit SkipProtector(SkipLedger& ledger) : ledger_(ledger) {}
    bool protect(const CppUnit::Functor& functor, const CppUnit::ProtectorContext&) override {
        try {
            return functor();
        } catch (const mproc::test::Skipped& skipped) {
            ledger_.reasons[ledger_.current_test] = skipped.reason;
            return false;
        }
    }

private:
    SkipLedger& ledger_;
};

class ProgressListener : public CppUnit::TestListener {
public:
    ProgressListener(SkipLedger& ledger) : ledger_(ledger) {}
    void startTest(CppUnit::Test* test) override {
        ledger_.current_test = test->getName();
        failed_ = false;
        std::cout << test->getName() << " ... " << std::flush;
    }
    void addFailure(const CppUnit::TestFailure&) override { failed_ = true; }
    void endTest(CppUnit::Test* test) override {
        auto skip = ledger_.reasons.find(test->getName());
        if (failed_) std::cout << "FAIL\n";
        else if (skip != ledger_.reasons.end()) std::cout << "SKIP (" << skip->second << ")\n";
        else std::cout << "ok\n";
        ++ran_;
    }
    int ran() const { return ran_; }

private:
    SkipLedger& ledger_;
    bool failed_ = false;
    int ran_ = 0;
};

void collect_matching(CppUnit::Test* test, const std::string& filter, CppUnit::TestRunner& runner) {
    if (test->getChildTestCount() == 0) {
        if (test->getName().find(filter) != std::string::npos) runner.addTest(test);
        return;
    }
    for (int i = 0; i < test->getChildTestCount(); ++i) collect_matching(test->getChildTestAt(i), filter, runner);
}

}  // namespace

int main(int argc, char** argv) {
    mproc::spawn_main();  // a child of the spawn or forkserver start method runs its entry here and never returns
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " unit|stress|crash [FILTER]\n";
        return 1;
    }
    const std::string suite = argv[1];
    const std::string filter = argc > 2 ? argv[2] : "";
    CppUnit::Test* all = CppUnit::TestFactoryRegistry::getRegistry(suite).makeTest();

    CppUnit::TestRunner runner;
    if (filter.empty()) runner.addTest(all);
    else collect_matching(all, filter, runner);

    SkipLedger ledger;
    CppUnit::TestResult controller;
    controller.pushProtector(new SkipProtector(ledger));  // the protector chain owns and deletes it
    CppUnit::TestResultCollector collector;
    ProgressListener progress(ledger);
    controller.addListener(&collector);
    controller.addListener(&progress);
    runner.run(controller);
    CppUnit::CompilerOutputter(&collector, std::cerr).write();

    if (!collector.wasSuccessful()) return 1;
    if (progress.ran() == 0) {
        std::cerr << "no test in suite '" << suite << "' matched '" << filter << "': a suite that runs nothing fails\n";
        return 1;
    }
    if (!ledger.reasons.empty()) {
        for (const auto& [test, reason] : ledger.reasons) std::cerr << "skipped " << test << ": " << reason << "\n";
        return 77;
    }
    return 0;
}
