/* Counts, per guest thread and per parallel region, the executions of every translated block
 * and the data-cache misses of its loads, under qemu-user (TCG plugin API v1, qemu 7.2).
 *
 * Debian ships qemu's plugin ABI in the qemu-aarch64 binary but no qemu-plugin.h, so the few
 * prototypes used here are declared by hand; they match include/qemu/qemu-plugin.h of qemu 7.2
 * (QEMU_PLUGIN_VERSION 1).
 *
 * The guest marks what is counted with a system call no program makes: lseek(-1, WARM_MARK, 0)
 * starts the cache simulation (a warm-up inference leaves the caches as a steady stream of
 * inferences would), lseek(-1, BEGIN_MARK, 0) starts counting, lseek(-1, END_MARK, 0) stops both, and lseek(-2, ADDRESS, 0) names the entry of
 * the runtime's parallel-launch function. Each time the thread that began the count executes
 * the block at that entry a new parallel region starts; every thread's work is counted against
 * the region in force, which a fork-join pool makes exact: no worker starts a region's tasks
 * before the launch, and the launching thread waits for all of them before the next one.
 *
 * Memory: every load and store goes through a simulated data-cache hierarchy given by the
 * plugin's arguments (the board's geometry): a private L1 per core, then up to two further
 * levels, each private or shared by all cores; lines are filled at every level on a miss
 * (write-allocate, least recently used replacement). Guest thread v runs on core v % cores.
 * A load that misses L1 is recorded by the level that served it, and whether it continued a
 * stream the core's prefetcher had learnt: per core, a table of STREAMS recent miss lines; a miss
 * at line L that equals an entry's last line plus its (non-zero) stride is prefetched; a miss
 * within STREAM_WINDOW lines of an entry sets that entry's stride. Stores fill the caches but are
 * not recorded: the store buffer hides their latency.
 *
 * Arguments: out=PATH, cores=N, l1=BYTES:WAYS, l2=BYTES:WAYS:{private|shared}, l3=... (optional),
 * line=BYTES. At exit PATH holds
 *   B <block id> <vaddr hex> <instruction bytes hex>             for every block that was counted
 *   C <thread> <region> <block id> <executions> <loads served by L2> <by L3> <by DRAM>
 *     <prefetched from L2> <from L3> <from DRAM>
 * (levels a board lacks count zero).
 */
#include <inttypes.h>
#include <pthread.h>
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
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                                          void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                                              uint64_t a6, uint64_t a7, uint64_t a8);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw, void *userdata);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define LSEEK 62 /* aarch64 system call number */
#define BEGIN_MARK 0x41524d434f535431ULL
#define END_MARK 0x41524d434f535432ULL
#define WARM_MARK 0x41524d434f535433ULL
#define MAX_THREADS 64
#define MAX_LEVELS 3
#define STREAMS 16
#define STREAM_WINDOW 4
/* an entry's fields: executions, loads served by L2, L3, DRAM, then the same three prefetched */
enum { EXECUTIONS = 0, SERVED = 1, PREFETCHED = 4, FIELDS = 7 };

struct block {
    uint64_t id, vaddr;
    size_t size;
    unsigned char *bytes;
    int counted;
};

struct cache {
    uint64_t sets, ways, clock;
    uint64_t *tags;  /* line + 1; 0 = empty */
    uint64_t *used;  /* last use, for least recently used replacement */
    pthread_mutex_t lock;
};

struct stream { uint64_t last; int64_t stride; uint64_t used; };

struct entry { uint64_t key; uint64_t counts[FIELDS]; };

struct thread {  /* touched only by its own guest thread while counting */
    struct entry *table;
    uint64_t capacity, used;
    struct entry *current;
};

static struct block **blocks;
static size_t block_count, block_capacity;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static char *out_path;
static int cores = 1, levels = 1, line_shift = 6;
static struct cache *caches[MAX_LEVELS];  /* per level: an array of `cores` caches, or one shared */
static int shared[MAX_LEVELS];
static struct stream streams[MAX_THREADS][STREAMS];
static uint64_t stream_clock[MAX_THREADS];
static struct thread threads[MAX_THREADS];
static volatile int counting, simulating;
static volatile unsigned int counting_thread;
static volatile uint64_t launch_vaddr, region;

static unsigned int slot(unsigned int vcpu) { return vcpu < MAX_THREADS ? vcpu : MAX_THREADS - 1; }

static struct entry *find_entry(struct thread *t, uint64_t key)
{
    if (2 * (t->used + 1) > t->capacity) {
        uint64_t capacity = t->capacity ? 2 * t->capacity : 4096;
        struct entry *table = calloc(capacity, sizeof *table);
        for (uint64_t i = 0; i < t->capacity; i++) {
            if (t->table[i].key) {
                uint64_t j = (t->table[i].key * 0x9e3779b97f4a7c15ULL) & (capacity - 1);
                while (table[j].key) {
                    j = (j + 1) & (capacity - 1);
                }
                table[j] = t->table[i];
            }
        }
        free(t->table);
        t->table = table;
        t->capacity = capacity;
    }
    uint64_t j = (key * 0x9e3779b97f4a7c15ULL) & (t->capacity - 1);
    while (t->table[j].key && t->table[j].key != key) {
        j = (j + 1) & (t->capacity - 1);
    }
    if (!t->table[j].key) {
        t->table[j].key = key;
        t->used++;
    }
    return &t->table[j];
}

static void block_executed(unsigned int vcpu, void *userdata)
{
    struct block *b = userdata;
    struct thread *t = &threads[slot(vcpu)];
    if (!counting) {
        t->current = NULL;
        return;
    }
    if (b->vaddr == launch_vaddr && vcpu == counting_thread) {
        __atomic_add_fetch(&region, 1, __ATOMIC_SEQ_CST);
    }
    b->counted = 1;
    /* key 0 marks an empty slot: ids start at 1 */
    t->current = find_entry(t, (b->id << 24) | (region & 0xffffff));
    t->current->counts[EXECUTIONS]++;
}

/* true on a hit; on a miss the line is filled */
static bool touch(struct cache *c, uint64_t line)
{
    uint64_t set = line % c->sets, *tags = c->tags + set * c->ways, *used = c->used + set * c->ways;
    pthread_mutex_lock(&c->lock);
    uint64_t now = ++c->clock, victim = 0;
    for (uint64_t w = 0; w < c->ways; w++) {
        if (tags[w] == line + 1) {
            used[w] = now;
            pthread_mutex_unlock(&c->lock);
            return true;
        }
        if (used[w] < used[victim]) {
            victim = w;
        }
    }
    tags[victim] = line + 1;
    used[victim] = now;
    pthread_mutex_unlock(&c->lock);
    return false;
}

static bool prefetched(unsigned int thread, uint64_t line)
{
    struct stream *s = streams[thread];
    uint64_t now = ++stream_clock[thread];
    int near = -1, oldest = 0;
    for (int i = 0; i < STREAMS; i++) {
        if (s[i].stride && line == s[i].last + (uint64_t)s[i].stride) {
            s[i].last = line;
            s[i].used = now;
            return true;
        }
        int64_t distance = (int64_t)(line - s[i].last);
        if (s[i].used && distance && distance >= -STREAM_WINDOW && distance <= STREAM_WINDOW && near < 0) {
            near = i;
        }
        if (s[i].used < s[oldest].used) {
            oldest = i;
        }
    }
    int i = near >= 0 ? near : oldest;
    s[i].stride = near >= 0 ? (int64_t)(line - s[i].last) : 0;
    s[i].last = line;
    s[i].used = now;
    return false;
}

static void access_line(unsigned int vcpu, uint64_t line, bool store)
{
    unsigned int core = vcpu % cores, thread = slot(vcpu);
    int served = levels;  /* levels = DRAM */
    for (int level = 0; level < levels; level++) {
        struct cache *c = shared[level] ? caches[level] : &caches[level][core];
        if (touch(c, line)) {
            served = level;
            break;
        }
    }
    if (store || served == 0 || !threads[thread].current) {
        return;
    }
    /* served: 1 = L2, 2 = L3 or DRAM when the board has two levels, levels = DRAM */
    int field = served == levels ? 2 : served - 1;
    int base = prefetched(thread, line) ? PREFETCHED : SERVED;
    threads[thread].current->counts[base + field]++;
}

static void memory_accessed(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *userdata)
{
    if (!simulating) {
        return;
    }
    uint64_t size = 1ULL << qemu_plugin_mem_size_shift(info);
    bool store = qemu_plugin_mem_is_store(info);
    uint64_t first = vaddr >> line_shift, last = (vaddr + size - 1) >> line_shift;
    for (uint64_t line = first; line <= last; line++) {
        access_line(vcpu, line, store);
    }
}

static void block_translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
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
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t len = qemu_plugin_insn_size(insn);
        memcpy(b->bytes + at, qemu_plugin_insn_data(insn), len);
        at += len;
        qemu_plugin_register_vcpu_mem_cb(insn, memory_accessed, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
    }
    pthread_mutex_lock(&blocks_lock);
    if (block_count == block_capacity) {
        block_capacity = block_capacity ? 2 * block_capacity : 65536;
        blocks = realloc(blocks, block_capacity * sizeof *blocks);
    }
    blocks[block_count++] = b;
    b->id = block_count;
    pthread_mutex_unlock(&blocks_lock);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, block_executed, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void system_call(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                        uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num != LSEEK) {
        return;
    }
    if ((int32_t)a1 == -1 && a2 == WARM_MARK) {
        simulating = 1;
    } else if ((int32_t)a1 == -1 && a2 == BEGIN_MARK) {
        counting_thread = vcpu;
        region = 0;
        simulating = counting = 1;
    } else if ((int32_t)a1 == -1 && a2 == END_MARK) {
        simulating = counting = 0;
    } else if ((int32_t)a1 == -2) {
        launch_vaddr = a2;
    }
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    FILE *out = fopen(out_path, "w");
    if (!out) {
        return;
    }
    for (size_t i = 0; i < block_count; i++) {
        const struct block *b = blocks[i];
        if (!b->counted) {
            continue;
        }
        fprintf(out, "B %" PRIu64 " %" PRIx64 " ", b->id, b->vaddr);
        for (size_t j = 0; j < b->size; j++) {
            fprintf(out, "%02x", b->bytes[j]);
        }
        fputc('\n', out);
    }
    for (int t = 0; t < MAX_THREADS; t++) {
        for (uint64_t i = 0; i < threads[t].capacity; i++) {
            const struct entry *e = &threads[t].table[i];
            if (!e->key) {
                continue;
            }
            fprintf(out, "C %d %" PRIu64 " %" PRIu64, t, e->key & 0xffffff, e->key >> 24);
            for (int f = 0; f < FIELDS; f++) {
                fprintf(out, " %" PRIu64, e->counts[f]);
            }
            fputc('\n', out);
        }
    }
    fclose(out);
}

static int make_level(int level, const char *spec)
{
    unsigned long long bytes = 0, ways = 0;
    char scope[16] = "private";
    if (sscanf(spec, "%llu:%llu:%15s", &bytes, &ways, scope) < 2 || !bytes || !ways) {
        return -1;
    }
    shared[level] = strcmp(scope, "shared") == 0;
    int copies = shared[level] ? 1 : cores;
    caches[level] = calloc(copies, sizeof(struct cache));
    for (int c = 0; c < copies; c++) {
        struct cache *cache = &caches[level][c];
        cache->ways = ways;
        cache->sets = bytes / ((1ULL << line_shift) * ways);
        cache->tags = calloc(cache->sets * ways, sizeof(uint64_t));
        cache->used = calloc(cache->sets * ways, sizeof(uint64_t));
        pthread_mutex_init(&cache->lock, NULL);
        if (!cache->sets) {
            return -1;
        }
    }
    return 0;
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *specs[MAX_LEVELS] = {0};
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = strdup(argv[i] + 4);
        } else if (strncmp(argv[i], "cores=", 6) == 0) {
            cores = atoi(argv[i] + 6);
        } else if (strncmp(argv[i], "line=", 5) == 0) {
            line_shift = __builtin_ctzll(strtoull(argv[i] + 5, NULL, 10));
        } else if (argv[i][0] == 'l' && argv[i][1] >= '1' && argv[i][1] <= '3' && argv[i][2] == '=') {
            specs[argv[i][1] - '1'] = argv[i] + 3;
        }
    }
    if (!out_path || cores < 1 || !specs[0]) {
        fprintf(stderr, "block_counter: pass out=PATH cores=N l1=BYTES:WAYS [l2=BYTES:WAYS:private|shared] [l3=...]\n");
        return -1;
    }
    for (levels = 0; levels < MAX_LEVELS && specs[levels]; levels++) {
        if (make_level(levels, specs[levels]) != 0) {
            fprintf(stderr, "block_counter: bad cache level l%d=%s\n", levels + 1, specs[levels]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, block_translated);
    qemu_plugin_register_vcpu_syscall_cb(id, system_call);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
