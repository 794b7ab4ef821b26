// The scanner's denylist: imports known to run code, reach the system or load more code when a
// pickle calls them (or, for a whole module, anything in it). Everything outside the weights-only
// allowlist is already unsafe; this table says which of those are known to be dangerous, so a
// report can tell an unknown class from a payload. One entry per reason.
#include <string_view>

#include "pthio/scan.hpp"

namespace pthio {

namespace {

struct deny {
  const char* module;
  const char* name;  // nullptr: every name in the module (and its submodules)
  const char* why;
};

// clang-format off
constexpr deny denylist[] = {
  // Processes, files and the interpreter itself.
  {"os", nullptr, "system, popen, exec*, spawn*, remove, and the rest of the OS"},
  {"posix", nullptr, "os on POSIX: system, execv, ..."},
  {"nt", nullptr, "os on Windows"},
  {"subprocess", nullptr, "runs programs"},
  {"pty", nullptr, "spawns a program on a pseudo-terminal"},
  {"commands", nullptr, "Python 2's getoutput"},
  {"popen2", nullptr, "Python 2's process pipes"},
  {"sys", nullptr, "modules, path, settrace, exit: the interpreter's state"},
  {"shutil", nullptr, "rmtree, move, copy: file-system changes"},
  {"tempfile", nullptr, "creates files"},
  {"glob", nullptr, "lists the file system"},
  {"signal", nullptr, "installs handlers, sends signals"},
  {"platform", nullptr, "popen on some versions"},
  {"ctypes", nullptr, "calls native code"},
  {"_ctypes", nullptr, "ctypes' native half"},
  {"cffi", nullptr, "calls native code"},
  {"multiprocessing", nullptr, "starts processes"},
  {"threading", nullptr, "starts threads running a target"},
  {"_thread", nullptr, "start_new_thread"},
  {"asyncio", nullptr, "subprocess and network helpers"},
  {"atexit", nullptr, "registers code to run at exit"},
  {"gc", nullptr, "get_referrers reaches any object"},
  // Running or compiling code.
  {"builtins", "eval", "evaluates a string"},
  {"builtins", "exec", "executes a string"},
  {"builtins", "execfile", "executes a file (Python 2)"},
  {"builtins", "compile", "compiles a string to code"},
  {"builtins", "__import__", "imports any module"},
  {"builtins", "getattr", "reaches any attribute: getattr(os, 'system')"},
  {"builtins", "setattr", "changes any attribute"},
  {"builtins", "delattr", "removes any attribute"},
  {"builtins", "globals", "the module's namespace"},
  {"builtins", "locals", "the caller's namespace"},
  {"builtins", "vars", "any object's namespace"},
  {"builtins", "open", "opens any file"},
  {"builtins", "file", "opens any file (Python 2)"},
  {"builtins", "input", "reads stdin (evaluates it in Python 2)"},
  {"builtins", "breakpoint", "starts a debugger"},
  {"builtins", "apply", "calls anything (Python 2)"},
  {"builtins", "memoryview", "raw memory access"},
  {"__builtin__", "eval", "Python 2 spelling of builtins.eval"},
  {"__builtin__", "exec", "Python 2 spelling"},
  {"__builtin__", "execfile", "Python 2 spelling"},
  {"__builtin__", "compile", "Python 2 spelling"},
  {"__builtin__", "open", "Python 2 spelling"},
  {"__builtin__", "file", "Python 2 spelling"},
  {"__builtin__", "getattr", "Python 2 spelling"},
  {"__builtin__", "__import__", "Python 2 spelling"},
  {"__builtin__", "apply", "Python 2 spelling"},
  {"runpy", nullptr, "runs modules and code objects"},
  {"code", nullptr, "interactive interpreter: runs source"},
  {"codeop", nullptr, "compiles source"},
  {"importlib", nullptr, "imports any module"},
  {"imp", nullptr, "imports any module (old API)"},
  {"zipimport", nullptr, "imports code from a zip"},
  {"pkgutil", nullptr, "resolve_name imports anything"},
  {"types", "FunctionType", "builds a function from a code object"},
  {"types", "CodeType", "builds a code object"},
  {"types", "MethodType", "binds a callable"},
  {"marshal", nullptr, "loads code objects"},
  {"pickle", nullptr, "loads: a pickle inside the pickle, unscanned"},
  {"_pickle", nullptr, "pickle's C half"},
  {"cPickle", nullptr, "Python 2's pickle"},
  {"dill", nullptr, "pickles code"},
  {"cloudpickle", nullptr, "pickles code"},
  {"joblib", nullptr, "loads pickles"},
  {"shelve", nullptr, "loads pickles from a file"},
  {"copyreg", "_reconstructor", "calls any class's __new__ and __init__ machinery"},
  {"operator", "attrgetter", "reaches any attribute"},
  {"operator", "methodcaller", "calls any method"},
  {"operator", "itemgetter", "a gadget for reaching items of module state"},
  {"_operator", "attrgetter", "operator's C half"},
  {"_operator", "methodcaller", "operator's C half"},
  {"functools", "partial", "binds any callable for a later call"},
  {"functools", "reduce", "calls a function over items"},
  {"collections", "namedtuple", "builds a class from strings with exec"},
  {"timeit", nullptr, "times (runs) a source string"},
  {"trace", nullptr, "runs code under tracing"},
  {"profile", nullptr, "runs a source string"},
  {"cProfile", nullptr, "runs a source string"},
  {"pdb", nullptr, "debugger: runs source"},
  {"bdb", nullptr, "debugger base: runs source"},
  {"pydoc", nullptr, "pipepager runs a command"},
  {"site", nullptr, "executes .pth files"},
  {"linecache", nullptr, "reads any file"},
  {"io", "open", "opens any file"},
  {"_io", "open", "opens any file"},
  {"_io", "FileIO", "opens any file"},
  {"webbrowser", nullptr, "opens URLs: runs a browser"},
  // Network.
  {"socket", nullptr, "opens connections"},
  {"_socket", nullptr, "socket's C half"},
  {"ssl", nullptr, "opens connections"},
  {"http", nullptr, "http.client and http.server"},
  {"httplib", nullptr, "Python 2's http.client"},
  {"urllib", nullptr, "urllib.request.urlopen"},
  {"urllib2", nullptr, "Python 2's urlopen"},
  {"requests", nullptr, "HTTP requests"},
  {"aiohttp", nullptr, "HTTP requests"},
  {"httpx", nullptr, "HTTP requests"},
  {"ftplib", nullptr, "FTP"},
  {"smtplib", nullptr, "sends mail"},
  {"telnetlib", nullptr, "telnet"},
  {"xmlrpc", nullptr, "remote calls"},
  {"sqlite3", nullptr, "opens database files, loads extensions"},
  // Installing software.
  {"pip", nullptr, "installs packages"},
  {"setuptools", nullptr, "builds and installs packages"},
  {"distutils", nullptr, "builds and installs packages"},
  {"ensurepip", nullptr, "installs pip"},
  {"venv", nullptr, "creates environments, runs pip"},
  // Numerical libraries' loaders and evaluators.
  {"numpy", "load", "loads pickles when allow_pickle"},
  {"numpy.lib.npyio", "load", "numpy.load"},
  {"numpy.testing._private.utils", "runstring", "exec of a string"},
  {"numpy.f2py", nullptr, "compiles and imports Fortran wrappers"},
  {"numpy.distutils", nullptr, "builds native code"},
  {"pandas", "read_pickle", "loads a pickle"},
  {"pandas.io.pickle", "read_pickle", "loads a pickle"},
  {"scipy.weave", nullptr, "compiles and runs C"},
  // torch functions that load or run code.
  {"torch", "load", "torch.load: a checkpoint inside the checkpoint, loaded unscanned"},
  {"torch.serialization", "load", "torch.load"},
  {"torch.serialization", "_load", "torch.load's worker"},
  {"torch.serialization", "_legacy_load", "torch.load's legacy worker"},
  {"torch.storage", "_load_from_bytes", "torch.load of embedded bytes"},
  {"torch.jit", "load", "loads and runs TorchScript"},
  {"torch.jit", "_load_for_lite_interpreter", "loads TorchScript"},
  {"torch.jit", "script", "compiles Python source"},
  {"torch.jit", "CompilationUnit", "compiles source"},
  {"torch.jit._serialization", nullptr, "torch.jit.load's module"},
  {"torch.jit.frontend", nullptr, "compiles Python source"},
  {"torch.hub", nullptr, "downloads and imports repositories"},
  {"torch._C", nullptr, "native ops and the TorchScript importer: arbitrary calls"},
  {"torch.ops", nullptr, "any registered operator, file and process ops included"},
  {"torch._ops", nullptr, "operator dispatch"},
  {"torch.utils.cpp_extension", nullptr, "compiles and loads native code"},
  {"torch._inductor", nullptr, "compiles and loads generated code"},
  {"torch._dynamo", nullptr, "compiles and runs bytecode"},
  {"torch.package", nullptr, "imports code from a package"},
  {"torch.fx.graph_module", nullptr, "rebuilds modules from Python source with exec"},
  {"torch._export", nullptr, "loads exported programs and their code"},
  {"torch.export", nullptr, "loads exported programs and their code"},
  {"torch.utils.data.datapipes", nullptr, "serialized lambdas"},
  {"torch.distributed.rpc", nullptr, "remote procedure calls"},
  {"torch.distributed.elastic", nullptr, "launches and supervises processes"},
  {"torch.distributed.launch", nullptr, "launches processes"},
  {"torch.distributed.run", nullptr, "launches processes"},
  {"torch.multiprocessing", nullptr, "starts processes"},
  {"torch.cuda", "_lazy_call", "queues a callable"},
  {"torch.testing._internal", nullptr, "test helpers that run commands"},
};
// clang-format on

bool in_module(std::string_view module, std::string_view root) {
  return module == root ||
         (module.size() > root.size() && module.starts_with(root) && module[root.size()] == '.');
}

}  // namespace

bool is_dangerous_global(std::string_view module, std::string_view name) {
  // A dotted name (protocol 4 reads `a.b` as getattr(a, 'b')) is judged by its first part.
  const std::string_view first = name.substr(0, name.find('.'));
  for (const deny& d : denylist) {
    if (!in_module(module, d.module)) continue;
    if (!d.name) return true;
    if (module == d.module && (first == d.name || name == d.name)) return true;
  }
  return false;
}

}  // namespace pthio
