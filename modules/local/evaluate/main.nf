/*
 * Every metric of every prediction of one split (all predictors and gene embeddings), against the
 * observed pseudobulk: one long metric table per split.
 */
process EVALUATE {
    tag "${meta.id} seed${seed} fold${fold}"
    label 'process_single'

    input:
    tuple val(meta), val(seed), val(fold), path(predictions, stageAs: 'predictions/*'), path(pseudobulk), path(de), path(splits)

    output:
    tuple val(meta), path("*.metrics.parquet"), emit: metrics
    path "versions.yml"                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.seed${seed}.fold${fold}"
    """
    evaluate.py \\
        ${predictions.collect { "--prediction ${it}" }.join(' ')} \\
        --pseudobulk ${pseudobulk} \\
        --de ${de} \\
        --splits ${splits} \\
        --out ${prefix}.metrics.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.seed${seed}.fold${fold}"
    """
    touch ${prefix}.metrics.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
