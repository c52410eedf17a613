/* Host test of a jpq C export: reads uint8 input codes (JPQ_INPUT_SIZE bytes per input) from IN_FILE,
 * writes the int32 logits (JPQ_OUTPUT_SIZE per input, little-endian) to OUT_FILE and prints the
 * inference time per input.   usage: jpq_test IN_FILE OUT_FILE */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model.h"

static int32_t scratch_words[(JPQ_SCRATCH_SIZE + 3) / 4]; /* 4-byte aligned scratch */
static uint8_t input[JPQ_INPUT_SIZE];
static int32_t logits[JPQ_OUTPUT_SIZE];

int main(int argc, char **argv) {
    FILE *fin, *fout;
    long n = 0;
    double seconds = 0.0;
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN_FILE OUT_FILE\n", argv[0]);
        return 2;
    }
    fin = fopen(argv[1], "rb");
    fout = fopen(argv[2], "wb");
    if (fin == NULL || fout == NULL) {
        fprintf(stderr, "error: cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    while (fread(input, 1, JPQ_INPUT_SIZE, fin) == JPQ_INPUT_SIZE) {
        int k;
        clock_t t0 = clock();
        jpq_model_run(input, logits, (uint8_t *)scratch_words);
        seconds += (double)(clock() - t0) / CLOCKS_PER_SEC;
        for (k = 0; k < JPQ_OUTPUT_SIZE; k++) {
            uint32_t v = (uint32_t)logits[k];
            unsigned char b[4];
            b[0] = (unsigned char)(v & 0xFF);
            b[1] = (unsigned char)((v >> 8) & 0xFF);
            b[2] = (unsigned char)((v >> 16) & 0xFF);
            b[3] = (unsigned char)((v >> 24) & 0xFF);
            fwrite(b, 1, 4, fout);
        }
        n++;
    }
    fclose(fin);
    if (fclose(fout) != 0) {
        fprintf(stderr, "error: cannot write %s\n", argv[2]);
        return 2;
    }
    printf("inputs %ld\nus_per_input %.3f\n", n, n > 0 ? 1e6 * seconds / (double)n : 0.0);
    return 0;
}
