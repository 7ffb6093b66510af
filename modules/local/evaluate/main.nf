/*
 * Every metric of every prediction of one split (all predictors and gene embeddings), against the
 * observed pseudobulk: one long metric table per split.
 */
process EVALUATE {
    tag "${meta.id} ${split.task} seed${split.seed} fold${split.fold}"
    label 'process_single'

    input:
    tuple val(meta), val(split), path(predictions, stageAs: 'predictions/*'), path(pseudobulk), path(de), path(splits)

    output:
    tuple val(meta), path("*.metrics.parquet"), emit: metrics
    path "versions.yml"                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.${split.task}.seed${split.seed}.fold${split.fold}"
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
    def prefix = task.ext.prefix ?: "${meta.id}.${split.task}.seed${split.seed}.fold${split.fold}"
    """
    touch ${prefix}.metrics.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
