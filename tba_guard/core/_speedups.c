/* The two steps of every request that cost most even in compiled Python, where they make and
 * join many small strings: reading the Authorization header's list of name="value", and writing
 * the base string's normalized parameters.
 *
 * Python stays the specification: each function has its twin in _native.py, and accelerated.py
 * takes one or the other. The header function answers only the common case, as header.py's
 * `_parameters_by_grammar` would; for anything else (non-ASCII, a malformed list, a
 * name given twice, an escaped name, an escape of anything but printable ASCII) it returns None
 * and Python decides, so every refusal and its reason are written once. The pure build runs the
 * twins; tests/core/test_speedups_differential.py holds the two equal on generated input, and
 * oauthlib.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

/* Every str is ready from 3.12 on, where PyUnicode_READY is deprecated. */
#if PY_VERSION_HEX < 0x030C0000
#define READY(text) PyUnicode_READY(text)
#else
#define READY(text) 0
#endif

enum { UNRESERVED_BYTE = 1, VALUE_BYTE = 2 };
static unsigned char byte_kinds[256];

static void fill_byte_kinds(void)
{
    /* Unreserved (RFC 5849 section 3.6): kept as it is in the base string, and all a name the
     * header function takes may hold (an escaped name is left to Python, which checks that it
     * does not decode to another). A value: printable ASCII but the quote and the backslash. */
    static const char unreserved[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    for (int byte = 0x20; byte < 0x7F; byte++) {
        if (byte != '"' && byte != '\\') byte_kinds[byte] |= VALUE_BYTE;
    }
    for (const char *p = unreserved; *p; p++) {
        byte_kinds[(unsigned char)*p] |= UNRESERVED_BYTE;
    }
}

/* The protocol's parameter names, interned once: the header's dict then shares its keys with
 * the compiled code's literals, so no key is allocated or hashed and every lookup of one is a
 * pointer comparison. */
static const char *const known_names[] = {
    "realm", "oauth_consumer_key", "oauth_token", "oauth_signature_method", "oauth_signature",
    "oauth_timestamp", "oauth_nonce", "oauth_version", "oauth_body_hash", "oauth_callback",
    "oauth_verifier",
};
#define KNOWN_NAMES (sizeof known_names / sizeof known_names[0])
static PyObject *interned_names[KNOWN_NAMES];

static int intern_known_names(void)
{
    for (size_t i = 0; i < KNOWN_NAMES; i++) {
        if (interned_names[i] == NULL) {
            interned_names[i] = PyUnicode_InternFromString(known_names[i]);
            if (interned_names[i] == NULL) return -1;
        }
    }
    return 0;
}

static PyObject *ascii_text(const unsigned char *bytes, Py_ssize_t length)
{
    PyObject *text = PyUnicode_New(length, 127);
    if (text != NULL) memcpy(PyUnicode_1BYTE_DATA(text), bytes, (size_t)length);
    return text;
}

static Py_ssize_t after_blanks(const unsigned char *s, Py_ssize_t n, Py_ssize_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    return i;
}

static int hex_digit(unsigned char byte)
{
    if (byte >= '0' && byte <= '9') return byte - '0';
    if (byte >= 'A' && byte <= 'F') return byte - 'A' + 10;
    if (byte >= 'a' && byte <= 'f') return byte - 'a' + 10;
    return -1;
}

/* The number of escapes in a value when each is `%XX` of printable ASCII, as a base64
 * signature's are; else -1 (a stray `%`, a control character, UTF-8: for Python to judge). */
static Py_ssize_t printable_escapes(const unsigned char *value, Py_ssize_t length)
{
    Py_ssize_t escapes = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        if (value[i] != '%') continue;
        if (length - i < 3) return -1;
        int high = hex_digit(value[i + 1]), low = hex_digit(value[i + 2]);
        if (high < 0 || low < 0) return -1;
        int byte = high * 16 + low;
        if (byte < 0x20 || byte > 0x7E) return -1;
        escapes++;
        i += 2;
    }
    return escapes;
}

/* `value` with its `escapes` escapes, already checked by printable_escapes, decoded. */
static PyObject *decoded_text(const unsigned char *value, Py_ssize_t length, Py_ssize_t escapes)
{
    PyObject *text = PyUnicode_New(length - 2 * escapes, 127);
    if (text == NULL) return NULL;
    unsigned char *out = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < length; i++) {
        if (value[i] == '%') {
            *out++ = (unsigned char)(hex_digit(value[i + 1]) * 16 + hex_digit(value[i + 2]));
            i += 2;
        } else {
            *out++ = value[i];
        }
    }
    return text;
}

/* 1 when added; 0 when the name was there already or the value is for Python to decode; -1 on
 * error. */
static int add_parameter(PyObject *parameters, const unsigned char *name, Py_ssize_t name_length,
                         const unsigned char *value, Py_ssize_t value_length)
{
    Py_ssize_t escapes = 0;
    if (memchr(value, '%', (size_t)value_length) != NULL) {
        escapes = printable_escapes(value, value_length);
        if (escapes < 0) return 0;
    }
    PyObject *key = NULL;
    for (size_t i = 0; i < KNOWN_NAMES; i++) {
        if (PyUnicode_GET_LENGTH(interned_names[i]) == name_length
            && memcmp(PyUnicode_1BYTE_DATA(interned_names[i]), name, (size_t)name_length) == 0) {
            key = Py_NewRef(interned_names[i]);
            break;
        }
    }
    if (key == NULL) key = ascii_text(name, name_length);
    if (key == NULL) return -1;
    PyObject *text = escapes ? decoded_text(value, value_length, escapes)
                             : ascii_text(value, value_length);
    if (text == NULL) {
        Py_DECREF(key);
        return -1;
    }
    Py_ssize_t before = PyDict_GET_SIZE(parameters);
    int failed = PyDict_SetItem(parameters, key, text);
    Py_DECREF(key);
    Py_DECREF(text);
    if (failed) return -1;
    return PyDict_GET_SIZE(parameters) > before;
}

PyDoc_STRVAR(header_parameters_doc,
"header_parameters(text, /)\n--\n\n"
"The parameters of an ASCII list of name=\"value\" (blanks around each part, empty elements\n"
"allowed), in order, values decoded; None when the text is not ASCII, is not such a list,\n"
"names a parameter twice, escapes a name, or escapes anything but printable ASCII.");

static PyObject *header_parameters(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "header_parameters() takes a str");
        return NULL;
    }
    if (READY(arg) < 0) return NULL;
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    PyObject *parameters = PyDict_New();
    if (parameters == NULL) return NULL;
    Py_ssize_t i = after_blanks(s, n, 0);
    while (i < n) {
        if (byte_kinds[s[i]] & UNRESERVED_BYTE) {
            Py_ssize_t name = i;
            while (i < n && (byte_kinds[s[i]] & UNRESERVED_BYTE)) i++;
            Py_ssize_t name_length = i - name;
            i = after_blanks(s, n, i);
            if (i == n || s[i] != '=') goto undecided;
            i = after_blanks(s, n, i + 1);
            if (i == n || s[i] != '"') goto undecided;
            Py_ssize_t value = ++i;
            while (i < n && (byte_kinds[s[i]] & VALUE_BYTE)) i++;
            if (i == n || s[i] != '"') goto undecided;
            int added = add_parameter(parameters, s + name, name_length, s + value, i - value);
            if (added < 0) {
                Py_DECREF(parameters);
                return NULL;
            }
            if (added == 0) goto undecided;
            i = after_blanks(s, n, i + 1);
            if (i == n) break;
        }
        if (s[i] != ',') goto undecided;
        i = after_blanks(s, n, i + 1);
    }
    return parameters;
undecided:
    Py_DECREF(parameters);
    Py_RETURN_NONE;
}

/* A str's UTF-8 bytes (lone surrogates U+DC80..U+DCFF back to the bytes they stand for), kept
 * alive by `owner`: the str itself when ASCII, else the bytes it encoded to. */
typedef struct {
    PyObject *owner;
    const unsigned char *bytes;
    Py_ssize_t length;
} Utf8;

static int utf8_of(PyObject *text, Utf8 *utf8)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "parameter names and values must be str");
        return -1;
    }
    if (READY(text) < 0) return -1;
    if (PyUnicode_IS_ASCII(text)) {
        Py_INCREF(text);
        utf8->owner = text;
        utf8->bytes = PyUnicode_1BYTE_DATA(text);
        utf8->length = PyUnicode_GET_LENGTH(text);
        return 0;
    }
    PyObject *encoded = PyUnicode_AsEncodedString(text, "utf-8", "surrogateescape");
    if (encoded == NULL) return -1;
    utf8->owner = encoded;
    utf8->bytes = (const unsigned char *)PyBytes_AS_STRING(encoded);
    utf8->length = PyBytes_GET_SIZE(encoded);
    return 0;
}

enum { STACK_PAIRS = 32, STACK_SCRATCH = 4096 };

typedef struct {
    Utf8 name, value;
    const char *encoded_name, *encoded_value; /* into the scratch buffer, once encoded */
    Py_ssize_t encoded_name_length, encoded_value_length;
} Pair;

/* RFC 5849 section 3.6, then again for the base string: an escape `%XX` is written `%25XX`. */
static char *encoded_twice(char *out, const unsigned char *bytes, Py_ssize_t length)
{
    static const char hex[] = "0123456789ABCDEF";
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char byte = bytes[i];
        if (byte_kinds[byte] & UNRESERVED_BYTE) {
            *out++ = (char)byte;
        } else {
            out[0] = '%';
            out[1] = '2';
            out[2] = '5';
            out[3] = hex[byte >> 4];
            out[4] = hex[byte & 15];
            out += 5;
        }
    }
    return out;
}

static int compare_spans(const char *a, Py_ssize_t a_length, const char *b, Py_ssize_t b_length)
{
    int order = memcmp(a, b, (size_t)(a_length < b_length ? a_length : b_length));
    if (order != 0) return order;
    return (a_length > b_length) - (a_length < b_length);
}

/* RFC 5849 section 3.4.1.3.2: by encoded name, then by encoded value. */
static int compare_pairs(const void *x, const void *y)
{
    const Pair *a = x, *b = y;
    int order = compare_spans(a->encoded_name, a->encoded_name_length, b->encoded_name,
                              b->encoded_name_length);
    if (order != 0) return order;
    return compare_spans(a->encoded_value, a->encoded_value_length, b->encoded_value,
                         b->encoded_value_length);
}

static int is_unsigned(PyObject *name)
{
    /* Header parameters the signature does not cover (RFC 5849 section 3.4.1.3.1), as
     * signature.py's `_UNSIGNED`; -1 on error. */
    if (!PyUnicode_Check(name)) return 0;
    if (READY(name) < 0) return -1;
    if (!PyUnicode_IS_ASCII(name)) return 0;
    Py_ssize_t length = PyUnicode_GET_LENGTH(name);
    const void *data = PyUnicode_1BYTE_DATA(name);
    return (length == 5 && memcmp(data, "realm", 5) == 0) ||
           (length == 15 && memcmp(data, "oauth_signature", 15) == 0);
}

/* Insertion sort for the usual dozen pairs: qsort's merge sort allocates and calls through a
 * pointer for every comparison. */
static void sort_pairs(Pair *pairs, Py_ssize_t count)
{
    if (count > 32) {
        qsort(pairs, (size_t)count, sizeof(Pair), compare_pairs);
        return;
    }
    for (Py_ssize_t i = 1; i < count; i++) {
        Pair pair = pairs[i];
        Py_ssize_t j = i;
        while (j > 0 && compare_pairs(&pairs[j - 1], &pair) > 0) {
            pairs[j] = pairs[j - 1];
            j--;
        }
        pairs[j] = pair;
    }
}

static int add_pair(Pair *pairs, Py_ssize_t *count, PyObject *name, PyObject *value)
{
    /* Held while encoding: the value must outlive anything the name's codec does. */
    Pair *pair = &pairs[*count];
    int failed = -1;
    Py_INCREF(name);
    Py_INCREF(value);
    if (utf8_of(name, &pair->name) == 0) {
        if (utf8_of(value, &pair->value) == 0) {
            (*count)++;
            failed = 0;
        } else {
            Py_DECREF(pair->name.owner);
        }
    }
    Py_DECREF(name);
    Py_DECREF(value);
    return failed;
}

PyDoc_STRVAR(normalized_for_base_string_doc,
"normalized_for_base_string(oauth, params, /)\n--\n\n"
"The normalized parameters of `oauth` (a dict; realm and oauth_signature left out) and\n"
"`params` (a list of (name, value) pairs), percent-encoded twice, as the base string holds\n"
"them: pairs joined by %26, names and values by %3D.");

static PyObject *normalized_for_base_string(PyObject *Py_UNUSED(module), PyObject *const *args,
                                            Py_ssize_t nargs)
{
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "normalized_for_base_string() takes a dict and a list of pairs");
        return NULL;
    }
    PyObject *oauth = args[0], *params = args[1];
    /* A usual request fits in the buffers on the stack; a long query or form, on the heap. */
    Pair stack_pairs[STACK_PAIRS], *pairs = stack_pairs;
    char stack_scratch[STACK_SCRATCH], *scratch = stack_scratch;
    Py_ssize_t capacity = PyDict_GET_SIZE(oauth) + PyList_GET_SIZE(params);
    if (capacity > STACK_PAIRS) {
        pairs = PyMem_New(Pair, capacity);
        if (pairs == NULL) return PyErr_NoMemory();
    }
    Py_ssize_t count = 0, position = 0;
    PyObject *result = NULL, *name, *value;

    /* Encoding a non-ASCII str calls into its codec, so nothing is borrowed across it: each
     * text is held by its Utf8, and the count is checked against the room made. */
    while (PyDict_Next(oauth, &position, &name, &value)) {
        int unsigned_name = is_unsigned(name);
        if (unsigned_name < 0) goto done;
        if (unsigned_name) continue;
        if (count == capacity) goto changed;
        if (add_pair(pairs, &count, name, value) < 0) goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(params); i++) {
        PyObject *item = PyList_GET_ITEM(params, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "params must hold (name, value) pairs");
            goto done;
        }
        if (count == capacity) goto changed;
        if (add_pair(pairs, &count, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1)) < 0)
            goto done;
    }

    Py_ssize_t raw = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t length = pairs[i].name.length + pairs[i].value.length;
        if (length > (PY_SSIZE_T_MAX / 5 - 8) - raw) {
            PyErr_NoMemory();
            goto done;
        }
        raw += length;
    }
    if (raw * 5 > STACK_SCRATCH) { /* every byte takes at most 5 once encoded */
        scratch = PyMem_Malloc((size_t)raw * 5);
        if (scratch == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    char *out = scratch;
    for (Py_ssize_t i = 0; i < count; i++) {
        Pair *pair = &pairs[i];
        pair->encoded_name = out;
        out = encoded_twice(out, pair->name.bytes, pair->name.length);
        pair->encoded_name_length = out - pair->encoded_name;
        pair->encoded_value = out;
        out = encoded_twice(out, pair->value.bytes, pair->value.length);
        pair->encoded_value_length = out - pair->encoded_value;
    }
    sort_pairs(pairs, count);

    /* Each pair adds `%3D` and each join `%26`: 3 bytes a pair, less the first join. */
    Py_ssize_t total = (out - scratch) + (count > 0 ? 6 * count - 3 : 0);
    result = PyUnicode_New(total, 127);
    if (result == NULL) goto done;
    char *write = (char *)PyUnicode_1BYTE_DATA(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i > 0) {
            memcpy(write, "%26", 3);
            write += 3;
        }
        memcpy(write, pairs[i].encoded_name, (size_t)pairs[i].encoded_name_length);
        write += pairs[i].encoded_name_length;
        memcpy(write, "%3D", 3);
        write += 3;
        memcpy(write, pairs[i].encoded_value, (size_t)pairs[i].encoded_value_length);
        write += pairs[i].encoded_value_length;
    }
    goto done;

changed:
    PyErr_SetString(PyExc_RuntimeError, "the parameters changed size while being encoded");
done:
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_DECREF(pairs[i].name.owner);
        Py_DECREF(pairs[i].value.owner);
    }
    if (pairs != stack_pairs) PyMem_Free(pairs);
    if (scratch != stack_scratch) PyMem_Free(scratch);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"header_parameters", header_parameters, METH_O, header_parameters_doc},
    {"normalized_for_base_string", (PyCFunction)(void (*)(void))normalized_for_base_string,
     METH_FASTCALL, normalized_for_base_string_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tba_guard.core._speedups",
    .m_doc = "C versions of header.py's and signature.py's hottest steps; see the sources.",
    .m_size = 0,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    fill_byte_kinds();
    if (intern_known_names() < 0) return NULL;
    return PyModuleDef_Init(&speedups_module);
}
