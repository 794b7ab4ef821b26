// Lib/_compat_pickle.py builds its 3 -> 2 maps by reversing the 2 -> 3 ones (REVERSE_NAME_MAPPING
// = dict((v, k) for (k, v) in NAME_MAPPING.items()), asserting nothing collides), then adds a few
// renames that go one way only. This table does the same: every entry says which way it goes,
// lookups in either direction read the same entries, and a compile-time check stands in for
// Python's asserts.
#include "compat_names.h"

#include <algorithm>
#include <iterator>

namespace pthio::detail {
namespace {

enum class way : std::uint8_t {
  both,  // the mutual mappings, reversed for writing
  to3,   // added to IMPORT_MAPPING / NAME_MAPPING after the reversal
  to2,   // added to REVERSE_IMPORT_MAPPING / REVERSE_NAME_MAPPING
};

struct module_rename {
  std::string_view py2, py3;
  way dir = way::both;
};

struct name_rename {
  std::string_view py2_module, py2_name, py3_module, py3_name;
  way dir = way::both;
};

constexpr module_rename module_renames[] = {
    // IMPORT_MAPPING
    {"__builtin__", "builtins"},
    {"copy_reg", "copyreg"},
    {"Queue", "queue"},
    {"SocketServer", "socketserver"},
    {"ConfigParser", "configparser"},
    {"repr", "reprlib"},
    {"tkFileDialog", "tkinter.filedialog"},
    {"tkSimpleDialog", "tkinter.simpledialog"},
    {"tkColorChooser", "tkinter.colorchooser"},
    {"tkCommonDialog", "tkinter.commondialog"},
    {"Dialog", "tkinter.dialog"},
    {"Tkdnd", "tkinter.dnd"},
    {"tkFont", "tkinter.font"},
    {"tkMessageBox", "tkinter.messagebox"},
    {"ScrolledText", "tkinter.scrolledtext"},
    {"Tkconstants", "tkinter.constants"},
    {"Tix", "tkinter.tix"},
    {"ttk", "tkinter.ttk"},
    {"Tkinter", "tkinter"},
    {"markupbase", "_markupbase"},
    {"_winreg", "winreg"},
    {"thread", "_thread"},
    {"dummy_thread", "_dummy_thread"},
    {"dbhash", "dbm.bsd"},
    {"dumbdbm", "dbm.dumb"},
    {"dbm", "dbm.ndbm"},
    {"gdbm", "dbm.gnu"},
    {"xmlrpclib", "xmlrpc.client"},
    {"SimpleXMLRPCServer", "xmlrpc.server"},
    {"httplib", "http.client"},
    {"htmlentitydefs", "html.entities"},
    {"HTMLParser", "html.parser"},
    {"Cookie", "http.cookies"},
    {"cookielib", "http.cookiejar"},
    {"BaseHTTPServer", "http.server"},
    {"test.test_support", "test.support"},
    {"commands", "subprocess"},
    {"urlparse", "urllib.parse"},
    {"robotparser", "urllib.robotparser"},
    {"urllib2", "urllib.request"},
    {"anydbm", "dbm"},
    {"_abcoll", "collections.abc"},
    // IMPORT_MAPPING.update: read only
    {"cPickle", "pickle", way::to3},
    {"_elementtree", "xml.etree.ElementTree", way::to3},
    {"FileDialog", "tkinter.filedialog", way::to3},
    {"SimpleDialog", "tkinter.simpledialog", way::to3},
    {"DocXMLRPCServer", "xmlrpc.server", way::to3},
    {"SimpleHTTPServer", "http.server", way::to3},
    {"CGIHTTPServer", "http.server", way::to3},
    {"UserDict", "collections", way::to3},
    {"UserList", "collections", way::to3},
    {"UserString", "collections", way::to3},
    {"whichdb", "dbm", way::to3},
    {"StringIO", "io", way::to3},
    {"cStringIO", "io", way::to3},
    // REVERSE_IMPORT_MAPPING.update: written only
    {"bz2", "_bz2", way::to2},
    {"dbm", "_dbm", way::to2},
    {"functools", "_functools", way::to2},
    {"gdbm", "_gdbm", way::to2},
    {"pickle", "_pickle", way::to2},
};

constexpr name_rename name_renames[] = {
    // NAME_MAPPING
    {"__builtin__", "xrange", "builtins", "range"},
    {"__builtin__", "reduce", "functools", "reduce"},
    {"__builtin__", "intern", "sys", "intern"},
    {"__builtin__", "unichr", "builtins", "chr"},
    {"__builtin__", "unicode", "builtins", "str"},
    {"__builtin__", "long", "builtins", "int"},
    {"itertools", "izip", "builtins", "zip"},
    {"itertools", "imap", "builtins", "map"},
    {"itertools", "ifilter", "builtins", "filter"},
    {"itertools", "ifilterfalse", "itertools", "filterfalse"},
    {"itertools", "izip_longest", "itertools", "zip_longest"},
    {"UserDict", "IterableUserDict", "collections", "UserDict"},
    {"UserList", "UserList", "collections", "UserList"},
    {"UserString", "UserString", "collections", "UserString"},
    {"whichdb", "whichdb", "dbm", "whichdb"},
    {"_socket", "fromfd", "socket", "fromfd"},
    {"_multiprocessing", "Connection", "multiprocessing.connection", "Connection"},
    {"multiprocessing.process", "Process", "multiprocessing.context", "Process"},
    {"multiprocessing.forking", "Popen", "multiprocessing.popen_fork", "Popen"},
    {"urllib", "ContentTooShortError", "urllib.error", "ContentTooShortError"},
    {"urllib", "getproxies", "urllib.request", "getproxies"},
    {"urllib", "pathname2url", "urllib.request", "pathname2url"},
    {"urllib", "quote_plus", "urllib.parse", "quote_plus"},
    {"urllib", "quote", "urllib.parse", "quote"},
    {"urllib", "unquote_plus", "urllib.parse", "unquote_plus"},
    {"urllib", "unquote", "urllib.parse", "unquote"},
    {"urllib", "url2pathname", "urllib.request", "url2pathname"},
    {"urllib", "urlcleanup", "urllib.request", "urlcleanup"},
    {"urllib", "urlencode", "urllib.parse", "urlencode"},
    {"urllib", "urlopen", "urllib.request", "urlopen"},
    {"urllib", "urlretrieve", "urllib.request", "urlretrieve"},
    {"urllib2", "HTTPError", "urllib.error", "HTTPError"},
    {"urllib2", "URLError", "urllib.error", "URLError"},
    // MULTIPROCESSING_EXCEPTIONS
    {"multiprocessing", "AuthenticationError", "multiprocessing.context", "AuthenticationError"},
    {"multiprocessing", "BufferTooShort", "multiprocessing.context", "BufferTooShort"},
    {"multiprocessing", "ProcessError", "multiprocessing.context", "ProcessError"},
    {"multiprocessing", "TimeoutError", "multiprocessing.context", "TimeoutError"},
    // NAME_MAPPING.update: read only
    {"__builtin__", "basestring", "builtins", "str", way::to3},
    {"exceptions", "StandardError", "builtins", "Exception", way::to3},
    {"UserDict", "UserDict", "collections", "UserDict", way::to3},
    {"socket", "_socketobject", "socket", "SocketType", way::to3},
    // REVERSE_NAME_MAPPING.update: written only
    {"__builtin__", "reduce", "_functools", "reduce", way::to2},
    {"FileDialog", "FileDialog", "tkinter.filedialog", "FileDialog", way::to2},
    {"FileDialog", "LoadFileDialog", "tkinter.filedialog", "LoadFileDialog", way::to2},
    {"FileDialog", "SaveFileDialog", "tkinter.filedialog", "SaveFileDialog", way::to2},
    {"SimpleDialog", "SimpleDialog", "tkinter.simpledialog", "SimpleDialog", way::to2},
    {"DocXMLRPCServer", "ServerHTMLDoc", "xmlrpc.server", "ServerHTMLDoc", way::to2},
    {"DocXMLRPCServer", "XMLRPCDocGenerator", "xmlrpc.server", "XMLRPCDocGenerator", way::to2},
    {"DocXMLRPCServer", "DocXMLRPCRequestHandler", "xmlrpc.server", "DocXMLRPCRequestHandler",
     way::to2},
    {"DocXMLRPCServer", "DocXMLRPCServer", "xmlrpc.server", "DocXMLRPCServer", way::to2},
    {"DocXMLRPCServer", "DocCGIXMLRPCRequestHandler", "xmlrpc.server", "DocCGIXMLRPCRequestHandler",
     way::to2},
    {"SimpleHTTPServer", "SimpleHTTPRequestHandler", "http.server", "SimpleHTTPRequestHandler",
     way::to2},
    {"CGIHTTPServer", "CGIHTTPRequestHandler", "http.server", "CGIHTTPRequestHandler", way::to2},
    {"socket", "_socketobject", "_socket", "socket", way::to2},
    // PYTHON3_OSERROR_EXCEPTIONS, PYTHON3_IMPORTERROR_EXCEPTIONS: written only
    {"exceptions", "OSError", "builtins", "BrokenPipeError", way::to2},
    {"exceptions", "OSError", "builtins", "ChildProcessError", way::to2},
    {"exceptions", "OSError", "builtins", "ConnectionAbortedError", way::to2},
    {"exceptions", "OSError", "builtins", "ConnectionError", way::to2},
    {"exceptions", "OSError", "builtins", "ConnectionRefusedError", way::to2},
    {"exceptions", "OSError", "builtins", "ConnectionResetError", way::to2},
    {"exceptions", "OSError", "builtins", "FileExistsError", way::to2},
    {"exceptions", "OSError", "builtins", "FileNotFoundError", way::to2},
    {"exceptions", "OSError", "builtins", "InterruptedError", way::to2},
    {"exceptions", "OSError", "builtins", "IsADirectoryError", way::to2},
    {"exceptions", "OSError", "builtins", "NotADirectoryError", way::to2},
    {"exceptions", "OSError", "builtins", "PermissionError", way::to2},
    {"exceptions", "OSError", "builtins", "ProcessLookupError", way::to2},
    {"exceptions", "OSError", "builtins", "TimeoutError", way::to2},
    {"exceptions", "ImportError", "builtins", "ModuleNotFoundError", way::to2},
};

// PYTHON2_EXCEPTIONS: exceptions.X <-> builtins.X, both ways.
constexpr std::string_view python2_exceptions[] = {
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BaseException",
    "BufferError",
    "BytesWarning",
    "DeprecationWarning",
    "EOFError",
    "EnvironmentError",
    "Exception",
    "FloatingPointError",
    "FutureWarning",
    "GeneratorExit",
    "IOError",
    "ImportError",
    "ImportWarning",
    "IndentationError",
    "IndexError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "NameError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PendingDeprecationWarning",
    "ReferenceError",
    "RuntimeError",
    "RuntimeWarning",
    "StopIteration",
    "SyntaxError",
    "SyntaxWarning",
    "SystemError",
    "SystemExit",
    "TabError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "UnicodeTranslateError",
    "UnicodeWarning",
    "UserWarning",
    "ValueError",
    "Warning",
    "ZeroDivisionError",
};

constexpr bool reads(way w) { return w != way::to2; }
constexpr bool writes(way w) { return w != way::to3; }

bool is_python2_exception(std::string_view name) {
  return std::find(std::begin(python2_exceptions), std::end(python2_exceptions), name) !=
         std::end(python2_exceptions);
}

// _compat_pickle's asserts: no two entries map the same name the same way, so each direction is
// a function and the order of the entries does not matter.
constexpr bool one_to_one() {
  for (const auto& a : module_renames)
    for (const auto& b : module_renames) {
      if (&a == &b) continue;
      if (reads(a.dir) && reads(b.dir) && a.py2 == b.py2) return false;
      if (writes(a.dir) && writes(b.dir) && a.py3 == b.py3) return false;
    }
  for (const auto& a : name_renames) {
    for (const auto& b : name_renames) {
      if (&a == &b) continue;
      if (reads(a.dir) && reads(b.dir) && a.py2_module == b.py2_module && a.py2_name == b.py2_name)
        return false;
      if (writes(a.dir) && writes(b.dir) && a.py3_module == b.py3_module &&
          a.py3_name == b.py3_name)
        return false;
    }
    // builtins.X for a Python 2 exception X is written as exceptions.X, by the rule below.
    if (writes(a.dir) && a.py3_module == "builtins")
      for (auto e : python2_exceptions)
        if (a.py3_name == e) return false;
  }
  return true;
}
static_assert(one_to_one(), "a Python 2/3 name is mapped twice in the same direction");

}  // namespace

global_ref python3_name(std::string module, std::string name) {
  for (const auto& m : name_renames)
    if (reads(m.dir) && m.py2_module == module && m.py2_name == name)
      return {std::string(m.py3_module), std::string(m.py3_name)};
  // Python maps only PYTHON2_EXCEPTIONS; every exceptions.X is read as builtins.X here, which
  // also covers exceptions Python 2 had on some platforms only (WindowsError).
  if (module == "exceptions") return {"builtins", std::move(name)};
  for (const auto& m : module_renames)
    if (reads(m.dir) && m.py2 == module) return {std::string(m.py3), std::move(name)};
  return {std::move(module), std::move(name)};
}

std::pair<std::string_view, std::string_view> python2_name(std::string_view module,
                                                           std::string_view name) {
  for (const auto& m : name_renames)
    if (writes(m.dir) && m.py3_module == module && m.py3_name == name)
      return {m.py2_module, m.py2_name};
  if (module == "builtins" && is_python2_exception(name)) return {"exceptions", name};
  for (const auto& m : module_renames)
    if (writes(m.dir) && m.py3 == module) return {m.py2, name};
  return {module, name};
}

}  // namespace pthio::detail
