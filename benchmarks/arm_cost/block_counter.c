/* Counts executions of every translated block under qemu-user (TCG plugin API v1, qemu 7.2).
 *
 * Debian ships qemu's plugin ABI in the qemu-aarch64 binary but no qemu-plugin.h, so the few
 * prototypes used here are declared by hand; they match include/qemu/qemu-plugin.h of qemu 7.2
 * (QEMU_PLUGIN_VERSION 1).
 *
 * Each translation gets its own record with an inline (non-atomic) counter: the guest must run
 * single-threaded for exact counts. At exit every record that executed is written as
 *   <vaddr hex> <executions> <instruction bytes hex>
 * to the file named by the plugin argument out=PATH.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

struct block {
    uint64_t executions;  /* first: the inline counter's target */
    uint64_t vaddr;
    size_t size;
    unsigned char *bytes;
};

static struct block **blocks;
static size_t block_count, block_capacity;
static char *out_path;

static void count_block(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb), size = 0;
    for (size_t i = 0; i < n; i++) {
        size += qemu_plugin_insn_size(qemu_plugin_tb_get_insn(tb, i));
    }
    struct block *b = calloc(1, sizeof *b);
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->size = size;
    b->bytes = malloc(size ? size : 1);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t len = qemu_plugin_insn_size(insn);
        memcpy(b->bytes + at, qemu_plugin_insn_data(insn), len);
        at += len;
    }
    if (block_count == block_capacity) {
        block_capacity = block_capacity ? 2 * block_capacity : 65536;
        blocks = realloc(blocks, block_capacity * sizeof *blocks);
    }
    blocks[block_count++] = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->executions, 1);
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    FILE *out = fopen(out_path, "w");
    if (!out) {
        return;
    }
    for (size_t i = 0; i < block_count; i++) {
        const struct block *b = blocks[i];
        if (!b->executions) {
            continue;
        }
        fprintf(out, "%" PRIx64 " %" PRIu64 " ", b->vaddr, b->executions);
        for (size_t j = 0; j < b->size; j++) {
            fprintf(out, "%02x", b->bytes[j]);
        }
        fputc('\n', out);
    }
    fclose(out);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = strdup(argv[i] + 4);
        }
    }
    if (!out_path) {
        fprintf(stderr, "block_counter: pass out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, count_block);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
