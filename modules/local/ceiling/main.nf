process CEILING {
    tag "${meta.id} seed${seed} fold${fold}"
    label 'process_low'

    input:
    tuple val(meta), path(h5ad), path(pseudobulk), path(de), path(splits), val(seed), val(fold)

    output:
    tuple val(meta), path("*.metrics.parquet"), emit: metrics
    path "versions.yml"                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.ceiling.seed${seed}.fold${fold}"
    """
    ceiling.py \\
        --h5ad ${h5ad} \\
        --pseudobulk ${pseudobulk} \\
        --de ${de} \\
        --splits ${splits} \\
        --seed ${seed} \\
        --fold ${fold} \\
        --dataset ${meta.id} \\
        --out ${prefix}.metrics.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.ceiling.seed${seed}.fold${fold}"
    """
    touch ${prefix}.metrics.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
